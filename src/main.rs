//! The `intakeq-fs` binary's entry: parses the command line and dispatches `mount`
//! (`run.rs`), `demo`, `mock-server`, `check`, `forget`, `key`, `completions`, `man`
//! (`commands.rs`) and `status`; sets up logging and malloc tuning. Where state lives
//! is `places.rs` (always private: see `private_dir`).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use intakeq_fs::private_dir::{open_given_append, open_private_append};

mod cli;
mod commands;
mod places;
mod run;

use cli::{Cli, Cmd};
use commands::{cmd_check, cmd_completions, cmd_demo, cmd_forget, cmd_key, cmd_man, cmd_mock};
use places::state_dir;
use run::cmd_mount;

const DEFAULT_BASE_URL: &str = "https://intakeq.com/api/v1/";

fn main() -> ExitCode {
    limit_malloc_retention();
    // `mount -t fuse.intakeq-fs` (fstab) runs us as `intakeq-fs SOURCE DIR -o OPTIONS`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match intakeq_fs::mount_helper::translate(&args) {
        Some(Ok(ordinary)) => Cli::parse_from(ordinary),
        Some(Err(msg)) => {
            eprintln!("intakeq-fs: {msg}");
            return ExitCode::FAILURE;
        }
        None => Cli::parse(),
    };
    let result = match cli.cmd {
        Cmd::Mount(a) => cmd_mount(*a),
        Cmd::Demo(a) => cmd_demo(a),
        Cmd::MockServer(a) => cmd_mock(a),
        Cmd::Check(a) => return cmd_check(a),
        Cmd::Status(a) => match state_dir() {
            Ok(dir) => return intakeq_fs::status::run_cli(a, &dir),
            Err(e) => Err(e),
        },
        Cmd::Forget(a) => cmd_forget(a),
        Cmd::Completions { shell } => cmd_completions(shell),
        Cmd::Man => cmd_man(),
        Cmd::Key { action } => cmd_key(action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("intakeq-fs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Cache buffers of several MiB come and go; glibc's default keeps freed ones that size
/// in the heap, so RSS drifts above the cache budget. Serving allocations above 4 MiB
/// from mmap returns them to the system on free, while read buffers (at most 1 MiB)
/// stay on the heap (docs/BENCHMARKS.md, peak RSS rows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_retention() {
    // SAFETY: runs first in main, before any thread exists; it only sets a malloc
    // tuning parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Fixing the mmap threshold also fixes the trim threshold at 128 KiB, which
        // would hand every freed read buffer back and fault it in again.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_retention() {}

/// Log lines go to `file` (created 0600, never through a symlink) or stderr; ANSI
/// colours only when stderr is a terminal. Warnings and errors are also remembered for
/// the status file (`status::ErrorsLayer`).
fn init_logging(file: Option<&Path>, given: bool) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("INTAKEQ_FS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let open = if given { open_given_append } else { open_private_append };
            let f = open(path).map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            let fmt = builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).finish();
            fmt.with(intakeq_fs::status::ErrorsLayer).init();
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .finish()
            .with(intakeq_fs::status::ErrorsLayer)
            .init(),
    }
    Ok(())
}
