//! intakeq-fs: an IntakeQ account's client files as a FUSE filesystem. The crate root
//! only declares the modules; `docs/ARCHITECTURE.md` maps them.

pub mod fake;
pub mod limiter;
pub mod remote;
