//! SMB tier: the clinic gateway of issue 22, end to end. A real `smbd` serves the share
//! definition of `contrib/samba/smb.conf.example` over a real mount of the fake, and
//! desks (Linux accounts with Samba passwords) drive it with `smbclient`, as Windows and
//! Mac desks would. Each test asserts what the server then holds (names, bytes, count)
//! and the exact API calls the desk's work cost; the harness is `tests/smb/gateway.rs`.
//!
//! Needs root, `smbd` and `smbclient` (scripts/setup-deps.sh); elsewhere each test says
//! SKIPPED and returns, except in CI, where a missing piece fails it. Only the
//! `testparm` check runs without root.

mod common;
#[path = "smb/gateway.rs"]
mod gateway;

use std::time::{Duration, Instant};

use common::*;
use gateway::*;

/// What the desk's new version of a document holds.
const NEW: &[u8] = b"new version typed at the front desk\n";

/// The account the gateway tests start from: `account()` plus a Word document.
fn clinic() -> intakeq_fs::fake::store::Store {
    let s = account();
    s.add_file(1001, "doc.docx", None, &b"PK old document bytes"[..]);
    s
}

// ---- the configuration is what the docs say -------------------------------------------

/// `testparm -s -v` of the contrib file, as `section -> [(parameter, value)]`.
fn testparm() -> Vec<(String, Vec<(String, String)>)> {
    let testparm = tool("testparm").unwrap();
    let out = std::process::Command::new(testparm)
        .args(["-s", "-v", CONTRIB])
        .output()
        .unwrap();
    assert!(out.status.success(), "testparm failed: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        !err.contains("Unknown parameter")
            && !err.contains("Ignoring unknown")
            && !err.contains("found in service section"),
        "testparm complains about the contrib file:\n{err}"
    );
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let l = line.trim();
        if l.starts_with('[') && l.ends_with(']') {
            sections.push((l[1..l.len() - 1].to_string(), Vec::new()));
        } else if let (Some((k, v)), Some(s)) = (l.split_once('='), sections.last_mut()) {
            s.1.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    sections
}

/// A parameter's value in a section; `testparm -v` prints a share's defaults once, under
/// `[global]`, so a share without its own line has that value.
fn param<'a>(conf: &'a [(String, Vec<(String, String)>)], section: &str, name: &str) -> &'a str {
    let find = |sec: &str| {
        conf.iter()
            .find(|(n, _)| n == sec)
            .unwrap_or_else(|| panic!("no [{sec}] in the contrib file"))
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    find(section)
        .or_else(|| find("global"))
        .unwrap_or_else(|| panic!("testparm shows no `{name}` for [{section}]"))
}

#[test]
fn the_contrib_share_definition_is_what_the_docs_say_per_testparm() {
    if !on_path("testparm") {
        assert!(std::env::var_os("CI").is_none(), "testparm is missing in CI");
        eprintln!("SKIPPED: testparm is missing (scripts/setup-deps.sh installs samba)");
        return;
    }
    let conf = testparm();
    for share in [SHARE, VIEW] {
        for (name, want) in [
            ("store dos attributes", "No"),
            ("map archive", "No"),
            ("map hidden", "No"),
            ("map system", "No"),
            ("map readonly", "No"),
            ("ea support", "No"),
            ("nt acl support", "No"),
            ("strict sync", "No"),
            ("sync always", "No"),
            ("vfs objects", "catia"),
            ("force user", ""),
            ("force group", ""),
            ("guest ok", "No"),
            ("posix locking", "No"),
        ] {
            // Booleans print as Yes/No, enums (map readonly) in lower case.
            assert_eq!(
                param(&conf, share, name).to_lowercase(),
                want.to_lowercase(),
                "[{share}] {name}"
            );
        }
        let veto = param(&conf, share, "veto files");
        for probe in ["/desktop.ini/", "/Thumbs.db/", "/.DS_Store/", "/._*/"] {
            assert!(veto.contains(probe), "[{share}] veto files lacks {probe}: {veto}");
        }
        for office in ["~$", "~WRL"] {
            assert!(
                !veto.contains(office),
                "[{share}] must not veto Office's {office} files"
            );
        }
        // catia: each character Windows cannot show maps to the macOS (SFM) private-use
        // character for it, so Mac desks show the real name and nothing is mangled.
        let map = param(&conf, share, "catia:mappings");
        for (c, pua) in [
            ('"', 0xf020),
            ('*', 0xf021),
            (':', 0xf022),
            ('<', 0xf023),
            ('>', 0xf024),
            ('?', 0xf025),
            ('\\', 0xf026),
            ('|', 0xf027),
        ] {
            let pair = format!("0x{:02x}:0x{pua:04x}", c as u32);
            assert!(
                map.split(',').any(|p| p == pair),
                "[{share}] catia:mappings lacks {pair} ({c})"
            );
        }
    }
    assert_eq!(param(&conf, SHARE, "read only"), "No");
    assert_eq!(param(&conf, SHARE, "valid users"), "@clinic-write");
    assert_eq!(param(&conf, SHARE, "write list"), "@clinic-write");
    assert_eq!(param(&conf, VIEW, "read only"), "Yes");
    assert_eq!(param(&conf, VIEW, "valid users"), "@clinic");
    assert_eq!(param(&conf, VIEW, "write list"), "");
    assert_eq!(param(&conf, "global", "smb ports"), "445");
    assert_eq!(param(&conf, "global", "map to guest"), "Never");
    assert_eq!(param(&conf, "global", "server smb encrypt"), "required");
    assert!(param(&conf, "global", "server min protocol").starts_with("SMB2"));
    // The mount line the file documents keeps a wait below smbclient's 20 s.
    let text = std::fs::read_to_string(CONTRIB).unwrap();
    let wait: u64 = text
        .split("--max-wait ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the contrib file documents the mount's --max-wait");
    assert!(wait < 20, "--max-wait {wait} is not below smbclient's 20 s");
    for opt in ["--allow-other", "--gid", "--umask 0007", "--audit-log"] {
        assert!(text.contains(opt), "the documented mount line lacks {opt}");
    }
}

// ---- what a desk does, and what it costs -----------------------------------------------

#[test]
fn a_desk_puts_a_new_file_with_one_upload_under_its_name() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("letter.txt", NEW);
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; put letter.txt \"referral letter.txt\"",
        &[],
    );
    assert!(r.status().is_none(), "put failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 0,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(bytes_of(&srv.store, 1001, "referral letter.txt"), vec![NEW.to_vec()]);
}

#[test]
fn a_desk_puts_over_an_uncached_file_with_one_upload_one_delete_and_no_download() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("notes.txt", NEW);
    // smbd opens the existing file O_RDWR without O_TRUNC, then ftruncates it to 0
    // (docs/SMBD-SYSCALLS.txt): nothing of the old bytes is needed.
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; put notes.txt notes.txt", &[]);
    assert!(r.status().is_none(), "put failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 1,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), vec![NEW.to_vec()]);
}

#[test]
fn two_desks_get_a_file_with_one_download_between_them_and_each_read_is_audited() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    for (desk, local) in [(DESK1, "one.txt"), (DESK2, "two.txt")] {
        let r = gw.smb(desk, SHARE, &format!("cd clients/1001; get notes.txt {local}"), &[]);
        assert!(r.status().is_none(), "get failed: {}", r.text);
        assert_eq!(std::fs::read(gw.local_path(local)).unwrap(), b"hello notes\n");
    }
    // One cache that every desk's reads fill.
    settled(
        &srv.store,
        Calls {
            upload: 0,
            delete: 0,
            list_files: 0,
            download: 1,
        },
    );
    let id = srv.store.files_named(1001, "notes.txt")[0].id.clone();
    for desk in [DESK1, DESK2] {
        let line = audit_line(&gw, desk, "read", &id);
        assert_eq!(line["result"], "ok", "{line}");
    }
}

#[test]
fn a_desk_renames_a_file_within_a_client() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; rename notes.txt \"session notes.txt\"",
        &[],
    );
    assert!(r.status().is_none(), "rename failed: {}", r.text);
    // The API has no rename: the bytes are fetched (not cached yet), uploaded under the
    // new name, and the old file deleted.
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 1,
            list_files: 1,
            download: 1,
        },
    );
    assert_eq!(
        bytes_of(&srv.store, 1001, "session notes.txt"),
        vec![b"hello notes\n".to_vec()]
    );
    assert!(bytes_of(&srv.store, 1001, "notes.txt").is_empty());
    audit_line(&gw, DESK1, "rename", "");
}

#[test]
fn a_desk_deletes_a_file_with_one_call() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    let id = srv.store.files_named(1001, "notes.txt")[0].id.clone();
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; del notes.txt", &[]);
    assert!(r.status().is_none(), "del failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 0,
            delete: 1,
            list_files: 0,
            download: 0,
        },
    );
    assert!(bytes_of(&srv.store, 1001, "notes.txt").is_empty());
    let line = audit_line(&gw, DESK1, "delete", &id);
    assert_eq!(line["result"], "ok", "{line}");
}

/// smbd puts an empty file over an existing one as open O_RDWR (no O_TRUNC), ftruncate
/// to 0, close: the same calls as an overwrite a desk abandoned before writing
/// (docs/SMBD-SYSCALLS.txt, 7). The rule for those (nothing written after a truncate to 0 of
/// a listed file: not uploaded) therefore leaves the document as it was here too, while
/// smbclient reports success.
#[test]
fn a_desk_putting_an_empty_file_over_a_document_changes_nothing_on_the_server() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("empty", b"");
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; put empty notes.txt", &[]);
    assert!(r.status().is_none(), "put failed: {}", r.text);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        calls(&srv.store),
        Calls {
            upload: 0,
            delete: 0,
            list_files: 0,
            download: 0,
        }
    );
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), vec![b"hello notes\n".to_vec()]);
}

/// Word's save, as it reaches smbd: owner file, new bytes to a temp, the original
/// renamed to a second temp, the first temp renamed over the original, the second temp
/// and the owner file deleted.
#[test]
fn an_office_save_costs_one_upload_and_one_delete_and_no_tilde_name_reaches_the_server() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    let before = names(&srv.store, 1001);
    gw.local_file("owner", b"\x0bDesk One   owner record of Word");
    gw.local_file("new.docx", NEW);
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; put owner \"~$doc.docx\"; put new.docx ~WRL0001.tmp; \
         rename doc.docx ~WRL0002.tmp; rename ~WRL0001.tmp doc.docx; del ~WRL0002.tmp; \
         del \"~$doc.docx\"",
        &[],
    );
    assert!(r.status().is_none(), "the save failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 1,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(bytes_of(&srv.store, 1001, "doc.docx"), vec![NEW.to_vec()]);
    assert_eq!(names(&srv.store, 1001), before, "a name came or went");
}

#[test]
fn an_abandoned_wrl_temp_file_is_never_uploaded() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("half.docx", NEW);
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; put half.docx ~WRL0009.tmp", &[]);
    assert!(r.status().is_none(), "put failed: {}", r.text);
    // Longer than the temp files' 5 s hold.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        calls(&srv.store),
        Calls {
            upload: 0,
            delete: 0,
            list_files: 0,
            download: 0,
        }
    );
    assert!(!names(&srv.store, 1001).iter().any(|n| n.starts_with('~')));
}

/// Explorer's New > Text Document: an empty file, renamed by the person a moment later.
#[test]
fn a_new_empty_file_renamed_after_two_seconds_is_uploaded_once_under_its_final_name() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("empty", b"");
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; put empty \"New Text Document.txt\"",
        &[],
    );
    assert!(r.status().is_none(), "put failed: {}", r.text);
    std::thread::sleep(Duration::from_secs(2));
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; rename \"New Text Document.txt\" \"phone call 3 March.txt\"",
        &[],
    );
    assert!(r.status().is_none(), "rename failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 0,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(
        bytes_of(&srv.store, 1001, "phone call 3 March.txt"),
        vec![Vec::<u8>::new()]
    );
    assert!(bytes_of(&srv.store, 1001, "New Text Document.txt").is_empty());
}

/// A desk with little patience (smbclient -t 2) overwrites a 4 MiB file the mount has
/// not cached while downloads crawl at 1 MiB/s: whatever the desk sees, the patient's
/// file on the server is never missing and never empty, and ends up either as it was
/// or as the desk's new version.
#[test]
fn an_overwrite_abandoned_by_an_impatient_desk_never_leaves_the_file_empty() {
    need_smbd!();
    let store = clinic();
    let old: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    store.add_file(1001, "scan.pdf", None, old.clone());
    let srv = server(store);
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    srv.store.set_bandwidth(Some(1 << 20));
    gw.local_file("scan.pdf", NEW);
    let watch = Watch::start(&srv.store, 1001, "scan.pdf");
    let t0 = Instant::now();
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; put scan.pdf scan.pdf", &["-t", "2"]);
    let desk_saw = r.status().map(str::to_string);
    // Long enough for a download started by the open to finish, and what smbd does
    // after the desk left (truncate, close) to reach the server.
    while t0.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_quiet(&srv.store);
    let seen = watch.finish();
    assert!(
        seen.is_empty(),
        "the file was missing or empty on the server: {seen:?} (desk saw {desk_saw:?})"
    );
    let now = bytes_of(&srv.store, 1001, "scan.pdf");
    match desk_saw {
        None => assert_eq!(now, vec![NEW.to_vec()], "the put succeeded"),
        // Told it failed: the desk left before writing (the file must be as it was), or
        // during the upload at close, which smbd still finishes (the new version).
        Some(status) => assert!(
            now == vec![old] || now == vec![NEW.to_vec()],
            "the put failed with {status}: the file is neither as it was nor the new version"
        ),
    }
}

/// The desk gives up while the mount is still uploading its new version at close
/// (uploads crawl at 64 KiB/s; smbclient -t 2): the patient's file is never missing or
/// empty, and ends up as one version, the old or the new.
#[test]
fn an_overwrite_the_desk_gives_up_on_during_the_upload_never_leaves_the_file_empty() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    srv.store.set_upload_bandwidth(Some(64 << 10));
    let new: Vec<u8> = (0..256u32 << 10).map(|i| (i % 239) as u8).collect();
    gw.local_file("notes.txt", &new);
    let watch = Watch::start(&srv.store, 1001, "notes.txt");
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; put notes.txt notes.txt", &["-t", "2"]);
    let desk_saw = r.status().map(str::to_string);
    wait_quiet(&srv.store);
    let seen = watch.finish();
    assert!(
        seen.is_empty(),
        "the file was missing or empty on the server: {seen:?} (desk saw {desk_saw:?})"
    );
    let now = bytes_of(&srv.store, 1001, "notes.txt");
    eprintln!(
        "desk saw {desk_saw:?}; the server holds {} file(s) of sizes {:?}",
        now.len(),
        now.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(
        now == vec![b"hello notes\n".to_vec()] || now == vec![new],
        "not one whole version (desk saw {desk_saw:?}): {} file(s) of sizes {:?}",
        now.len(),
        now.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn two_desks_writing_at_once_both_land_and_the_audit_log_names_each() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    gw.local_file("a.txt", b"from desk one\n");
    gw.local_file("b.txt", b"from desk two\n");
    let (r1, r2) = std::thread::scope(|s| {
        let one = s.spawn(|| gw.smb(DESK1, SHARE, "cd clients/1001; put a.txt \"desk one.txt\"", &[]));
        let two = s.spawn(|| gw.smb(DESK2, SHARE, "cd clients/1001; put b.txt \"desk two.txt\"", &[]));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert!(
        r1.status().is_none() && r2.status().is_none(),
        "{}\n{}",
        r1.text,
        r2.text
    );
    wait_quiet(&srv.store);
    let c = calls(&srv.store);
    // Two uploads; their confirming listing is one per batch (2 s after the client's
    // last upload), so one listing, or two if the uploads landed far enough apart.
    assert_eq!((c.upload, c.delete, c.download), (2, 0, 0), "{c:?}");
    assert!((1..=2).contains(&c.list_files), "{c:?}");
    assert_eq!(
        bytes_of(&srv.store, 1001, "desk one.txt"),
        vec![b"from desk one\n".to_vec()]
    );
    assert_eq!(
        bytes_of(&srv.store, 1001, "desk two.txt"),
        vec![b"from desk two\n".to_vec()]
    );
    for (desk, name) in [(DESK1, "desk one.txt"), (DESK2, "desk two.txt")] {
        let line = audit_line(&gw, desk, "upload", "");
        assert_eq!(line["result"], "ok", "{line}");
        assert_eq!(line["size"], 14, "{line}");
        let shown = line["name"].as_str().unwrap_or_default();
        assert!(
            shown.starts_with("name#") && !shown.contains(name),
            "the name is not hashed: {line}"
        );
    }
    let text = std::fs::read_to_string(&gw.audit).unwrap();
    assert!(!text.contains(KEY), "the key is in the audit log");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&gw.audit).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the audit log is not 0600");
}

/// Explorer's Delete of a whole client folder, under the mount's `--no-delete`.
#[test]
fn a_desks_deltree_of_a_client_folder_leaves_the_server_files_under_no_delete() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &["--no-delete"]);
    gw.primed(&srv.store, 1001);
    let before: Vec<_> = srv.store.files_of(1001).into_iter().map(|f| f.id).collect();
    let r = gw.smb(DESK1, SHARE, "cd clients; deltree 1001", &[]);
    assert!(
        r.text.contains("NT_STATUS_ACCESS_DENIED"),
        "the desk was not told no: {}",
        r.text
    );
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<_> = srv.store.files_of(1001).into_iter().map(|f| f.id).collect();
    assert_eq!(after, before, "files were deleted");
    assert_eq!(calls(&srv.store).delete, 0);
    assert_eq!(calls(&srv.store).upload, 0);
}

/// `--no-delete` still lets Office replace a document (the save is a replace, not a loss).
#[test]
fn an_office_save_still_replaces_the_document_under_no_delete() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &["--no-delete"]);
    gw.primed(&srv.store, 1001);
    gw.local_file("owner", b"\x0bDesk One   owner record of Word");
    gw.local_file("new.docx", NEW);
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; put owner \"~$doc.docx\"; put new.docx ~WRL0001.tmp; \
         rename doc.docx ~WRL0002.tmp; rename ~WRL0001.tmp doc.docx; del ~WRL0002.tmp; \
         del \"~$doc.docx\"",
        &[],
    );
    assert!(r.status().is_none(), "the save failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 1,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(bytes_of(&srv.store, 1001, "doc.docx"), vec![NEW.to_vec()]);
}

#[test]
fn a_front_desk_reads_through_the_view_share_and_can_change_nothing() {
    need_smbd!();
    let srv = server(clinic());
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    let r = gw.smb(FRONT, SHARE, "ls", &[]);
    assert!(
        r.text.contains("NT_STATUS_ACCESS_DENIED"),
        "the writers' share let the front desk in: {}",
        r.text
    );
    let r = gw.smb(FRONT, VIEW, "cd clients/1001; get notes.txt front.txt", &[]);
    assert!(r.status().is_none(), "get failed: {}", r.text);
    assert_eq!(std::fs::read(gw.local_path("front.txt")).unwrap(), b"hello notes\n");
    gw.local_file("x.txt", NEW);
    for cmd in [
        "put x.txt x.txt",
        "put x.txt notes.txt",
        "del notes.txt",
        "rename notes.txt y.txt",
    ] {
        let r = gw.smb(FRONT, VIEW, &format!("cd clients/1001; {cmd}"), &[]);
        assert!(r.status().is_some(), "{cmd} through the view share worked: {}", r.text);
    }
    // A writer on the view share cannot write either.
    let r = gw.smb(DESK1, VIEW, "cd clients/1001; put x.txt x.txt", &[]);
    assert!(
        r.status().is_some(),
        "a writer wrote through the view share: {}",
        r.text
    );
    wait_quiet(&srv.store);
    let c = calls(&srv.store);
    assert_eq!((c.upload, c.delete, c.download), (0, 0, 1), "{c:?}");
}

/// IntakeQ names with `:` and `?` reach a desk through catia under the macOS private-use
/// characters, not as mangled 8.3 names, and open by that name.
#[test]
fn names_with_a_colon_or_question_mark_reach_desks_unmangled_through_catia_both_ways() {
    need_smbd!();
    let store = clinic();
    store.add_file(1001, "Dr: Smith? intake.txt", None, &b"colon file\n"[..]);
    let srv = server(store);
    let gw = Gateway::start(&srv, &[]);
    gw.primed(&srv.store, 1001);
    let r = gw.smb(DESK1, SHARE, "cd clients/1001; ls", &[]);
    let shown = "Dr\u{f022} Smith\u{f025} intake.txt";
    assert!(r.text.contains(shown), "not listed as {shown:?}: {}", r.text);
    assert!(
        !r.text.contains('~') || !r.text.contains("DRSMI"),
        "mangled: {}",
        r.text
    );
    let r = gw.smb(
        DESK1,
        SHARE,
        &format!("cd clients/1001; get \"{shown}\" colon.txt"),
        &[],
    );
    assert!(r.status().is_none(), "get failed: {}", r.text);
    assert_eq!(std::fs::read(gw.local_path("colon.txt")).unwrap(), b"colon file\n");
    // Both ways: a Mac desk's `:` (sent as U+F022) is a real colon on IntakeQ.
    srv.store.reset_counts();
    gw.local_file("visit.txt", NEW);
    let r = gw.smb(
        DESK1,
        SHARE,
        "cd clients/1001; put visit.txt \"visit 10\u{f022}30.txt\"",
        &[],
    );
    assert!(r.status().is_none(), "put failed: {}", r.text);
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 0,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(bytes_of(&srv.store, 1001, "visit 10:30.txt"), vec![NEW.to_vec()]);
}

/// A request that would wait past `--max-wait` for the rate limit fails with EAGAIN,
/// which smbd 4.17 passes on as NT_STATUS_NETWORK_BUSY (lib/util/errmap_unix.c): the
/// desk is told "busy", at once, and its session lives on. smbclient says
/// `parallel_read returned NT_STATUS_NETWORK_BUSY` for a read (and leaves an empty
/// local file), `NT_STATUS_NETWORK_BUSY listing ...` for a directory.
#[test]
fn a_wait_past_max_wait_reaches_the_desk_as_network_busy_at_once() {
    need_smbd!();
    let srv = server(clinic());
    // Two calls a minute: the folders at mount and the listing of client 1001 take
    // them; a download or another client's listing would wait ~60 s.
    let gw = Gateway::start(&srv, &["--rate-limit", "2", "--max-wait", "2"]);
    gw.primed(&srv.store, 1001);
    let t0 = Instant::now();
    let r = gw.smb(
        DESK1,
        SHARE,
        "get clients/1001/notes.txt busy.txt; ls clients/1002/*; ls",
        &[],
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(
        r.text.contains("parallel_read returned NT_STATUS_NETWORK_BUSY"),
        "the read was not told busy: {}",
        r.text
    );
    assert!(
        r.text.contains("NT_STATUS_NETWORK_BUSY listing"),
        "the listing was not told busy: {}",
        r.text
    );
    // The session survived: the last command of the same run (`ls` of the share's
    // top) still answered.
    assert!(
        r.text
            .lines()
            .any(|l| l.trim_start().starts_with("clients ") && l.contains(" D ")),
        "the session did not survive: {}",
        r.text
    );
    assert_eq!(calls(&srv.store).download, 0);
}

// ---- helpers ---------------------------------------------------------------------------

/// The audit line for `op` by `desk` (on `file_id`, unless empty), with its uid and user.
fn audit_line(gw: &Gateway, desk: Desk, op: &str, file_id: &str) -> serde_json::Value {
    let uid = uid_of(desk.user).unwrap();
    let t0 = Instant::now();
    loop {
        let lines = gw.audit_lines();
        let hit = lines.iter().find(|l| {
            l["op"] == op
                && l["user"] == desk.user
                && l["uid"] == uid
                && l["client"].to_string().trim_matches('"') == "1001"
                && (file_id.is_empty() || l["file_id"] == file_id)
        });
        if let Some(l) = hit {
            for field in [
                "time", "uid", "user", "op", "client", "file_id", "size", "result", "name",
            ] {
                assert!(l.get(field).is_some(), "audit line lacks {field}: {l}");
            }
            return l.clone();
        }
        if t0.elapsed() > Duration::from_secs(5) {
            panic!(
                "no audit line op={op} user={} uid={uid} file_id={file_id:?}; the log: {lines:#?}",
                desk.user
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the server's counts stop changing for 3 s (at most 20 s).
fn wait_quiet(store: &intakeq_fs::fake::store::Store) {
    let t0 = Instant::now();
    let mut last = (calls(store), Instant::now());
    while t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        let now = calls(store);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            return;
        }
    }
}
