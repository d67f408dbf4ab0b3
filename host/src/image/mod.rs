//! The VM guest image (docs/vm.md): what `secllama image build` writes — the kernel, the
//! initramfs ([`build`], in the [`cpio`] format, with the modules of [`kmod`]), the command line and
//! the dm-verity model disk ([`verity`]).

pub mod build;
pub mod cpio;
pub mod kmod;
pub mod verity;
