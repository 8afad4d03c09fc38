//! intakeq-fs: an IntakeQ account's client files as a FUSE filesystem. The crate root
//! only declares the modules; `docs/ARCHITECTURE.md` maps them.

pub mod audit;
pub mod check;
pub mod core;
pub mod daemon;
pub mod fake;
pub mod forget;
pub mod fuse;
pub mod harden;
pub mod key;
pub mod keystore;
pub mod limiter;
pub mod mount;
pub mod mount_helper;
pub mod owner;
pub mod phi;
pub mod private_dir;
pub mod remote;
pub mod status;
