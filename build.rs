//! Build script: the version `intakeq-fs --version` prints. `scripts/package.sh` sets
//! `INTAKEQ_FS_COMMIT` to the commit it builds from, so a packaged binary names it
//! (`0.1.0 (commit 1a2b3c4d5e6f)`); other builds print the version alone (reading git
//! here would rebuild the crate at every commit, and a tarball has no git).

fn main() {
    println!("cargo:rerun-if-env-changed=INTAKEQ_FS_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let long = match std::env::var("INTAKEQ_FS_COMMIT") {
        Ok(c) if !c.trim().is_empty() => format!("{version} (commit {})", c.trim()),
        _ => version,
    };
    println!("cargo:rustc-env=INTAKEQ_FS_VERSION={long}");
}
