//! The command line's definition (clap): subcommands, flags and their defaults. The man
//! page and shell completions are generated from it; `main.rs` acts on what it parses.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use intakeq_fs::{check, fake};

/// The version `--version` prints: with the commit when `scripts/package.sh` built it
/// (`INTAKEQ_FS_COMMIT` at compile time: `0.1.0 (commit 1a2b3c4d5e6f)`), else the
/// version alone (reading git at build time would rebuild at every commit, and a source
/// tarball has none). Cargo rebuilds when the variable changes.
fn long_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match option_env!("INTAKEQ_FS_COMMIT") {
        Some(c) if !c.trim().is_empty() => format!("{} (commit {})", env!("CARGO_PKG_VERSION"), c.trim()),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    })
}

#[derive(Parser)]
#[command(
    name = "intakeq-fs",
    version = long_version(),
    about = "Mount an IntakeQ account's client files as a drive"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Mount an IntakeQ account. The API key comes from INTAKEQ_API_KEY or --api-key-file.
    Mount(Box<MountArgs>),
    /// Start a fake IntakeQ with sample data and mount it in the foreground (Ctrl-C unmounts).
    Demo(DemoArgs),
    /// Run the fake IntakeQ server alone and print its base URL, then the header its
    /// /_admin/ API needs (`X-Admin-Token: <random token>`).
    MockServer(MockArgs),
    /// Probe the API (read-only, at most 6 calls; --write --client ID adds an upload round
    /// trip) and report how it differs from the contract. Exit 0 safe, 1 unsafe, 2 error.
    Check(check::CheckArgs),
    /// Print what the running mounts of this user are doing (no API call).
    Status(intakeq_fs::status::StatusArgs),
    /// Remove everything this machine keeps for an account (kept listings, cache, quota
    /// ledger); uploads not yet sent are listed and kept unless --discard-uploads.
    Forget(intakeq_fs::forget::ForgetArgs),
    /// Print a shell completion script: `intakeq-fs completions bash > /etc/bash_completion.d/intakeq-fs`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `intakeq-fs man | man -l -`.
    Man,
    /// Keep the API key in the desktop's keyring (Secret Service: GNOME Keyring,
    /// KWallet, KeePassXC), so `mount` needs no key file and no INTAKEQ_API_KEY.
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyAction {
    /// Store the key: read from stdin (asked for, not shown, at a terminal), never
    /// from the command line.
    Set,
    /// Remove the stored key.
    Forget,
}

#[derive(Args, Clone)]
pub(crate) struct CommonMount {
    /// Stay attached until unmounted (default: return once the mount is ready).
    #[arg(long)]
    pub(crate) foreground: bool,
    /// Refuse every change with EROFS.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub(crate) allow_other: bool,
    /// Owner the mount's files show, a user name or number (default: the mounting user).
    /// With --allow-other, the kernel checks every caller against it.
    #[arg(long, value_name = "USER")]
    pub(crate) uid: Option<String>,
    /// Group the mount's files show, a group name or number (default: the mounting
    /// user's group). For a shared mount, the group whose members may write.
    #[arg(long, value_name = "GROUP")]
    pub(crate) gid: Option<String>,
    /// Mode bits taken away from 0777 (directories) and 0666 (files), octal, e.g. 0007
    /// for owner and group only (default: 0700/0600, or 0755/0644 with --allow-other).
    #[arg(long, value_name = "OCTAL")]
    pub(crate) umask: Option<String>,
    /// Keep an audit log: one JSON line per upload, delete, rename and read of a file,
    /// with the person (uid and user name) it was done for. Created 0600; an existing
    /// file must be a private file of the mounting user. Rotated at 10 MiB (5 kept).
    #[arg(long, value_name = "PATH")]
    pub(crate) audit_log: Option<PathBuf>,
    /// Write file names in the audit log as they are (PHI) instead of their keyed hash.
    #[arg(long, requires = "audit_log")]
    pub(crate) audit_names: bool,
    /// Refuse to delete files on the server (EPERM): deleting a client folder from a
    /// desk removes nothing. Saves that replace a file, and Office's, still work.
    #[arg(long)]
    pub(crate) no_delete: bool,
    /// How long a listing is trusted, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) metadata_ttl: u64,
    /// How long the client list (/clients, /by-name) is served before it is refreshed in
    /// the background, in seconds (21 calls per refresh for 2,000 clients).
    #[arg(long, default_value_t = 4 * 3600)]
    pub(crate) client_list_ttl: u64,
    /// Share of the daily limit, in percent, that only reading, uploads, deletes and
    /// renames may spend: listings and previews are refused once only this is left.
    #[arg(long, default_value_t = intakeq_fs::limiter::DEFAULT_RESERVE_PERCENT, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) reserve_percent: u32,
    /// Refuse reads by thumbnailers (tumblerd, *thumbnailer*) and file managers' own
    /// previews (pcmanfm's thumbnail thread, content sniffing) with EACCES instead of
    /// downloading for them; copies made with a file manager still work, below everything else.
    #[arg(long)]
    pub(crate) no_previews: bool,
    /// Private directory (0700) where listings are kept across mounts, sealed with a
    /// key derived from the API key (default $XDG_STATE_HOME/intakeq-fs/listings/<account>).
    #[arg(long)]
    pub(crate) listings_dir: Option<PathBuf>,
    /// Keep listings (client and file names) in memory only: nothing is written, and a
    /// remount lists again.
    #[arg(long)]
    pub(crate) no_keep_listings: bool,
    /// Days kept listings are kept; listings of accounts not mounted for as long are
    /// removed at mount too.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub(crate) keep_listings_days: u64,
    /// Memory budget of the content cache, in MiB.
    #[arg(long, default_value_t = 256)]
    pub(crate) cache_size: u64,
    /// API requests per minute this mount allows itself.
    #[arg(long, default_value_t = 10)]
    pub(crate) rate_limit: u32,
    /// API requests per rolling 24 hours this mount allows itself.
    #[arg(long, default_value_t = 500)]
    pub(crate) daily_limit: u32,
    /// Longest a request may wait for the rate limiter before failing with EAGAIN, seconds.
    #[arg(long, default_value_t = 120)]
    pub(crate) max_wait: u64,
    /// Where written data waits for upload (default $XDG_STATE_HOME/intakeq-fs/spool);
    /// the spool is a private subdirectory intakeq-fs-<uid> created inside it.
    #[arg(long)]
    pub(crate) spool_dir: Option<PathBuf>,
    /// Where downloads too large for the memory cache go; a private subdirectory
    /// intakeq-fs-<uid> is created inside it.
    #[arg(long)]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Disk budget for those downloads once nobody reads them, in MiB (emptied at exit).
    #[arg(long, default_value_t = 1024)]
    pub(crate) disk_cache_size: u64,
    /// Log file (default: stderr in the foreground, $XDG_STATE_HOME/intakeq-fs/intakeq-fs.log otherwise).
    #[arg(long)]
    pub(crate) log_file: Option<PathBuf>,
    /// Print file and client names in the log. EXPOSES PHI (patients' names and
    /// document titles) to whoever can read the log; by default logs show a short hash.
    #[arg(long)]
    pub(crate) log_names: bool,
    /// How long unmount waits for running uploads, seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) drain_timeout: u64,
    /// Seconds between retries of uploads that failed at close().
    #[arg(long, default_value_t = 30, hide = true)]
    pub(crate) retry_interval: u64,
    /// FUSE session threads.
    #[arg(long, default_value_t = 2, hide = true)]
    pub(crate) fuse_threads: usize,
    /// Mount over a directory that holds files (they stay hidden until unmount).
    #[arg(long)]
    pub(crate) nonempty: bool,
}

#[derive(Args)]
pub(crate) struct MountArgs {
    pub(crate) mountpoint: PathBuf,
    /// API base URL [env: INTAKEQ_BASE_URL].
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// Read the API key from the first line of this file (instead of INTAKEQ_API_KEY).
    /// The file must not be accessible by group or others (chmod 600).
    #[arg(long)]
    pub(crate) api_key_file: Option<PathBuf>,
    /// INSECURE: allow a plain http:// base URL to a host other than this machine. The
    /// API key and patients' files then cross the network unencrypted.
    #[arg(long)]
    pub(crate) insecure_plain_http: bool,
    #[command(flatten)]
    pub(crate) common: CommonMount,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    pub(crate) mountpoint: PathBuf,
    /// The demo's own fake server has no real limit; 600/min keeps browsing snappy.
    #[arg(long, default_value_t = 600)]
    pub(crate) rate_limit: u32,
}

#[derive(Args)]
pub(crate) struct MockArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// The key the fake accepts (a fake key, so argv is fine). Default: INTAKEQ_API_KEY or "demo-key".
    #[arg(long)]
    pub(crate) api_key: Option<String>,
    /// Load the demo data set.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Answer shapes where the contract is unconfirmed: `contract` (the likely ones) or
    /// `alt` (the plausible alternatives; see src/fake/profile.rs).
    #[arg(long, value_enum, default_value_t = fake::profile::Profile::Contract)]
    pub(crate) profile: fake::profile::Profile,
}
