//! The `secllama` subcommands, one module each (clap derive).

pub mod measure;
