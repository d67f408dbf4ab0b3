//! The `secllama` subcommands, one module each (clap derive).

pub mod bridge;
pub mod completions;
pub mod image;
pub mod launch;
pub mod measure;
pub mod status;
