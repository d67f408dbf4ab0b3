//! `secllama image …`: the VM guest image (docs/vm.md), one module per subcommand.

pub mod build;

/// `secllama image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Image {
    /// Build the guest's kernel, initramfs and command line from a VM-mode config.
    Build(build::Args),
}

/// Runs an `image` subcommand; returns what to print.
///
/// # Errors
/// As the subcommand.
pub fn run(i: &Image) -> anyhow::Result<String> {
    match i {
        Image::Build(a) => build::run(a),
    }
}
