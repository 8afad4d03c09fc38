//! The `mount.fuse3` helper form: `mount -t fuse.intakeq-fs SOURCE DIR -o OPTS` (and an
//! `/etc/fstab` line) makes `mount.fuse3` run `intakeq-fs SOURCE DIR -o OPTS`. This
//! module turns that argv into the ordinary `intakeq-fs mount DIR --flags` one; nothing
//! else parses mount options.

use std::ffi::{OsStr, OsString};

/// Subcommand names: an argv starting with one of these is the ordinary form.
const SUBCOMMANDS: &[&str] = &[
    "mount",
    "demo",
    "mock-server",
    "check",
    "status",
    "forget",
    "completions",
    "man",
    "key",
    "help",
];

/// `-o` options that take a value, and the flag each becomes.
const VALUED: &[(&str, &str)] = &[
    ("api_key_file", "--api-key-file"),
    ("base_url", "--base-url"),
    ("metadata_ttl", "--metadata-ttl"),
    ("keep_listings_days", "--keep-listings-days"),
    ("cache_size", "--cache-size"),
    ("rate_limit", "--rate-limit"),
    ("daily_limit", "--daily-limit"),
    ("max_wait", "--max-wait"),
    ("spool_dir", "--spool-dir"),
    ("cache_dir", "--cache-dir"),
    ("disk_cache_size", "--disk-cache-size"),
    ("log_file", "--log-file"),
    ("drain_timeout", "--drain-timeout"),
    ("uid", "--uid"),
    ("gid", "--gid"),
    ("umask", "--umask"),
    ("audit_log", "--audit-log"),
];

/// `-o` switches, and the flag each becomes.
const SWITCHES: &[(&str, &str)] = &[
    ("allow_other", "--allow-other"),
    ("no_keep_listings", "--no-keep-listings"),
    ("ro", "--read-only"),
    ("read_only", "--read-only"),
    ("foreground", "--foreground"),
    ("nonempty", "--nonempty"),
    ("audit_names", "--audit-names"),
    ("no_delete", "--no-delete"),
];

/// Options `mount(8)`, `mount.fuse3` and fstab add that the daemon sets itself or that
/// mean nothing to it: accepted and ignored.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "diratime",
    "nodiratime",
    "sync",
    "async",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "default_permissions",
];

/// If `args` (the whole argv) is the helper form, the equivalent ordinary argv, or a
/// one-line error for an option that is not understood. `None`: the ordinary form.
pub fn translate(args: &[OsString]) -> Option<Result<Vec<OsString>, String>> {
    let first = args.get(1)?.to_str().unwrap_or("");
    if first.starts_with('-') || SUBCOMMANDS.contains(&first) || args.len() < 3 {
        return None;
    }
    Some(translate_helper(args))
}

fn translate_helper(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let program = args[0].clone();
    // args[1] is the fstab source ("intakeq"): a label, the account comes from the options.
    let mountpoint = args[2].clone();
    let mut out: Vec<OsString> = vec![program, "mount".into(), mountpoint];
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        let opts: &OsStr = if a == "-o" {
            rest.next().ok_or("-o needs a value")?
        } else if let Some(joined) = a.to_str().and_then(|s| s.strip_prefix("-o")) {
            OsStr::new(joined)
        } else {
            return Err(format!(
                "unexpected argument {:?} (mount helper form: SOURCE DIR -o OPTIONS)",
                a
            ));
        };
        let opts = opts.to_str().ok_or("mount options must be UTF-8")?;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            out.extend(option(opt)?);
        }
    }
    Ok(out)
}

/// The flags one `-o` option becomes.
fn option(opt: &str) -> Result<Vec<OsString>, String> {
    let (name, value) = match opt.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (opt, None),
    };
    if name == "api_key" {
        return Err("the API key is never accepted as a mount option (it would show in ps and /proc/mounts): use api_key_file=PATH".into());
    }
    if let Some((_, flag)) = VALUED.iter().find(|(n, _)| *n == name) {
        let v = value
            .filter(|v| !v.is_empty())
            .ok_or(format!("mount option {name} needs a value ({name}=...)"))?;
        return Ok(vec![(*flag).into(), v.into()]);
    }
    if let Some((_, flag)) = SWITCHES.iter().find(|(n, _)| *n == name) {
        if value.is_some() {
            return Err(format!("mount option {name} takes no value"));
        }
        return Ok(vec![(*flag).into()]);
    }
    if IGNORED.contains(&name) || name.starts_with("x-") || name == "comment" {
        return Ok(Vec::new());
    }
    Err(format!(
        "unknown mount option {name:?} (see `man intakeq-fs` or the README's fstab section)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_ordinary_form_is_left_alone() {
        assert_eq!(translate(&argv(&["intakeq-fs", "mount", "/mnt"])), None);
        assert_eq!(translate(&argv(&["intakeq-fs", "status"])), None);
        assert_eq!(translate(&argv(&["intakeq-fs", "--help"])), None);
        assert_eq!(translate(&argv(&["intakeq-fs"])), None);
    }

    #[test]
    fn mount_fuse3_argv_becomes_mount_with_flags() {
        let got = translate(&argv(&[
            "intakeq-fs",
            "intakeq",
            "/srv/intakeq",
            "-o",
            "rw,nosuid,nodev,api_key_file=/etc/intakeq-fs/key,allow_other,rate_limit=8,_netdev,x-systemd.automount",
        ]));
        assert_eq!(
            got,
            Some(Ok(argv(&[
                "intakeq-fs",
                "mount",
                "/srv/intakeq",
                "--api-key-file",
                "/etc/intakeq-fs/key",
                "--allow-other",
                "--rate-limit",
                "8"
            ])))
        );
        let joined = translate(&argv(&["intakeq-fs", "src", "/m", "-oro,spool_dir=/s"]));
        assert_eq!(
            joined,
            Some(Ok(argv(&[
                "intakeq-fs",
                "mount",
                "/m",
                "--read-only",
                "--spool-dir",
                "/s"
            ])))
        );
        assert_eq!(
            translate(&argv(&["intakeq-fs", "src", "/m"])),
            Some(Ok(argv(&["intakeq-fs", "mount", "/m"])))
        );
        // A gateway's fstab line: the ownership options of a shared mount.
        assert_eq!(
            translate(&argv(&[
                "intakeq-fs",
                "src",
                "/m",
                "-o",
                "allow_other,uid=0,gid=clinic,umask=0007"
            ])),
            Some(Ok(argv(&[
                "intakeq-fs",
                "mount",
                "/m",
                "--allow-other",
                "--uid",
                "0",
                "--gid",
                "clinic",
                "--umask",
                "0007"
            ])))
        );
    }

    #[test]
    fn unknown_options_and_a_key_in_the_options_are_refused() {
        let e = translate(&argv(&["intakeq-fs", "s", "/m", "-o", "api_key=secret123"]))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("api_key_file") && !e.contains("secret123"), "{e}");
        let e = translate(&argv(&["intakeq-fs", "s", "/m", "-o", "frobnicate"]))
            .unwrap()
            .unwrap_err();
        assert!(e.contains("unknown mount option \"frobnicate\""), "{e}");
        let e = translate(&argv(&["intakeq-fs", "s", "/m", "-o", "rate_limit"]))
            .unwrap()
            .unwrap_err();
        assert_eq!(e, "mount option rate_limit needs a value (rate_limit=...)");
    }
}
