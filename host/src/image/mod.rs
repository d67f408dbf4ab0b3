//! The VM guest image (issue "VM isolation"): what `secllama image build` writes. So far the
//! initramfs archive format ([`cpio`]); the kernel, modules, init and model disk follow.

pub mod cpio;
