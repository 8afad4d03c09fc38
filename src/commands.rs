//! The other subcommands (bin side): `check`, `forget`, `key`, `demo` (with its banner),
//! `mock-server`, `completions` and `man`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use intakeq_fs::check;
use intakeq_fs::daemon::Readiness;
use intakeq_fs::fake;
use intakeq_fs::private_dir::ensure_private_dir;
use intakeq_fs::remote::http::HttpOptions;

use crate::cli::{self, Cli, CommonMount, DemoArgs, MockArgs};
use crate::places::{state_dir, Places};
use crate::run::{run_mount, runtime};
use crate::{init_logging, DEFAULT_BASE_URL};

/// `check`: the key is read as for `mount`; the check owns everything else.
pub(crate) fn cmd_check(a: check::CheckArgs) -> ExitCode {
    // As for `mount`: before the key is read, no core file or ptrace can ever hold it.
    if let Err(e) = intakeq_fs::harden::harden_process() {
        eprintln!("intakeq-fs: {e}");
        return ExitCode::from(check::EXIT_ERROR);
    }
    match intakeq_fs::key::read_key(a.api_key_file.as_deref()) {
        Ok(key) => check::run_cli(a, key, DEFAULT_BASE_URL),
        Err(msg) => {
            eprintln!("intakeq-fs: {msg}");
            ExitCode::from(check::EXIT_ERROR)
        }
    }
}

/// `forget`: the account from base URL and key as for `mount`, its places as `mount`
/// resolves them (without creating any), then `forget::forget`.
pub(crate) fn cmd_forget(a: intakeq_fs::forget::ForgetArgs) -> Result<(), String> {
    let _ = intakeq_fs::harden::harden_process();
    let key = intakeq_fs::key::read_key(a.api_key_file.as_deref())?;
    let base = a
        .base_url
        .clone()
        .or_else(|| std::env::var("INTAKEQ_BASE_URL").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    // Checked as `mount` checks it; the account is the hash of the text as given, as
    // `mount` computes it.
    let http = HttpOptions {
        allow_plain_http: true,
        ..HttpOptions::default()
    };
    intakeq_fs::remote::http::check_base_url(&base, &http).map_err(|e| e.to_string())?;
    let account = intakeq_fs::core::account_id(&base, &key);
    drop(key);
    let state = state_dir().ok();
    let mine = |given: &Option<PathBuf>, default: &str| -> Option<PathBuf> {
        match given {
            Some(d) => Some(
                d.join(format!("intakeq-fs-{}", intakeq_fs::private_dir::euid()))
                    .join(&account),
            ),
            None => state.as_ref().map(|s| s.join(default).join(&account)),
        }
    };
    let places = intakeq_fs::forget::Places {
        spool: mine(&a.spool_dir, "spool").ok_or("no state directory: pass --spool-dir")?,
        cache: mine(&a.cache_dir, "cache").ok_or("no state directory: pass --cache-dir")?,
        listings: mine(&a.listings_dir, "listings"),
        quota: state.as_ref().map(|s| s.join("quota").join(&account)),
    };
    println!("account {account}");
    print!("{}", intakeq_fs::forget::forget(&places, &account, a.discard_uploads)?);
    Ok(())
}

/// `key set` / `key forget`: the desktop keyring's entry that `mount` reads when no
/// other source gives a key.
pub(crate) fn cmd_key(action: cli::KeyAction) -> Result<(), String> {
    use intakeq_fs::keystore;
    let _ = intakeq_fs::harden::harden_process();
    match action {
        cli::KeyAction::Set => {
            let key = keystore::read_from_stdin()?;
            keystore::store(keystore::DEFAULT_NAME, &key)?;
            eprintln!("intakeq-fs: the API key is kept in the desktop keyring; `intakeq-fs mount DIR` reads it");
        }
        cli::KeyAction::Forget => match keystore::forget(keystore::DEFAULT_NAME)? {
            true => eprintln!("intakeq-fs: the API key was removed from the desktop keyring"),
            false => eprintln!("intakeq-fs: the desktop keyring holds no intakeq-fs key"),
        },
    }
    Ok(())
}

pub(crate) fn cmd_demo(a: DemoArgs) -> Result<(), String> {
    init_logging(None, false)?;
    let mountpoint = intakeq_fs::mount::check_mountpoint(&a.mountpoint, false)?;
    let key = format!("demo-{}", std::process::id());
    // The fake server runs on its own small runtime beside the mount's.
    let server_rt = runtime()?;
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let token = fake::server::random_token().map_err(|e| format!("cannot make the admin token: {e}"))?;
    let (bound, _task) = server_rt
        .block_on(fake::server::spawn(
            fake::demo::demo_store(),
            addr,
            key.clone(),
            token.clone(),
        ))
        .map_err(|e| format!("cannot start the demo server: {e}"))?;
    let base = fake::server::base_url(bound);
    eprint!("{}", demo_banner(&base, &mountpoint, &token));
    let tmp = std::env::temp_dir().join(format!("intakeq-fs-demo-{}", std::process::id()));
    ensure_private_dir(&tmp).map_err(|e| format!("demo directory: {e}"))?;
    let common = CommonMount {
        foreground: true,
        read_only: false,
        allow_other: false,
        uid: None,
        gid: None,
        umask: None,
        audit_log: None,
        audit_names: false,
        no_delete: false,
        metadata_ttl: 60,
        client_list_ttl: 3600,
        reserve_percent: intakeq_fs::limiter::DEFAULT_RESERVE_PERCENT,
        no_previews: false,
        listings_dir: Some(tmp.join("listings")),
        no_keep_listings: false,
        keep_listings_days: 30,
        cache_size: 256,
        rate_limit: a.rate_limit,
        daily_limit: u32::MAX,
        max_wait: 120,
        spool_dir: Some(tmp.join("spool")),
        cache_dir: Some(tmp.join("cache")),
        disk_cache_size: 1024,
        retry_interval: 30,
        log_file: None,
        log_names: true,
        drain_timeout: 10,
        fuse_threads: 2,
        nonempty: false,
    };
    // Demo data is made up: names in its log are harmless and make it readable.
    intakeq_fs::phi::set_show_names(true);
    let places = Places::resolve(&common, "demo", false)?;
    let result = run_mount(
        &base,
        key,
        &mountpoint,
        &common,
        &places,
        HttpOptions::default(),
        &mut Readiness::none(),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// What the demo prints first: where it is, what to try, whether writes survive, how
/// to stop it.
pub(crate) fn demo_banner(base: &str, mnt: &Path, admin_token: &str) -> String {
    let m = mnt.display();
    let exe = std::env::current_exe().unwrap_or_else(|_| "intakeq-fs".into());
    let try_first = [
        (format!("ls {m}/clients"), "the clients, by id"),
        (format!("ls -l {m}/clients/1001"), "one client's files and folders"),
        (format!("cat {m}/clients/1001/session-notes.txt"), "read a file"),
        (
            format!("getfattr -d {m}/clients/1001/payments.csv"),
            "its IntakeQ id, type and date",
        ),
        (format!("cp /etc/hostname {m}/clients/1002/"), "upload a file"),
        (
            format!("{} status", exe.display()),
            "pending uploads and the request budget",
        ),
    ];
    let width = try_first.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out =
        format!("intakeq-fs demo: a fake IntakeQ with 5 sample clients ({base}), mounted at {m}\n\nTry first:\n");
    for (cmd, what) in &try_first {
        out.push_str(&format!("  {cmd:<width$}   {what}\n"));
    }
    out.push_str(&format!(
        "\nWrites (cp, editors, mv, rm) work, against the fake server inside this process:\n\
         they do NOT survive the demo. Nothing reaches a real IntakeQ account.\n\
         Stop: Ctrl-C here; if you put the demo in the background, `fusermount3 -u {m}`\n\
         (or `kill %1`) unmounts it the same way.\n\
         The fake's admin API ({admin}/counts, …) answers only with the header\n\
         `{header}: {admin_token}`.\n\n",
        admin = format_args!("{}/_admin", base.trim_end_matches('/').trim_end_matches("/api/v1")),
        header = fake::server::ADMIN_TOKEN_HEADER,
    ));
    out
}

pub(crate) fn cmd_mock(a: MockArgs) -> Result<(), String> {
    init_logging(None, false)?;
    let key = a
        .api_key
        .or_else(|| std::env::var("INTAKEQ_API_KEY").ok().filter(|k| !k.is_empty()))
        .unwrap_or_else(|| "demo-key".into());
    let store = if a.demo {
        fake::demo::demo_store()
    } else {
        fake::store::Store::new()
    };
    store.set_profile(a.profile);
    let token = fake::server::random_token().map_err(|e| format!("cannot make the admin token: {e}"))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let (bound, task) = fake::server::spawn(store, a.listen, key, token.clone())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
        // Line 1: the base URL; line 2: the header `/_admin/` requires, as it is sent.
        println!("{}", fake::server::base_url(bound));
        println!("{}: {token}", fake::server::ADMIN_TOKEN_HEADER);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = task => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// `completions SHELL`: generated from the clap definition, so it never drifts.
pub(crate) fn cmd_completions(shell: clap_complete::Shell) -> Result<(), String> {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "intakeq-fs", &mut std::io::stdout());
    Ok(())
}

/// `man`: the man page, generated from the clap definition: the command, then each
/// subcommand's options.
pub(crate) fn cmd_man() -> Result<(), String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        clap_mangen::Man::new(cmd.clone()).render(out)?;
        for sub in cmd.get_subcommands() {
            writeln!(out, ".SH \"INTAKEQ-FS {}\"", sub.get_name().to_uppercase())?;
            if let Some(about) = sub.get_about() {
                writeln!(out, "{}", about.to_string().replace('\\', "\\\\"))?;
            }
            clap_mangen::Man::new(sub.clone().bin_name(format!("intakeq-fs {}", sub.get_name())))
                .render_synopsis_section(out)?;
            clap_mangen::Man::new(sub.clone()).render_options_section(out)?;
        }
        Ok(())
    };
    render(&mut out).map_err(|e| format!("cannot render the man page: {e}"))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| format!("cannot write the man page: {e}"))
}
