//! FUSE tier, real programs: vim and nano typed into through tmux, `sed -i`, rsync,
//! shell redirects, sqlite3, `gio save`/`gio copy`, `cp` over twins and an office-style
//! save, each against a real mount. Every test asserts what the server then holds
//! (names, bytes, count) and the exact API calls the program's work cost: one upload per
//! save, scratch files never on the server, no temp-named or empty copy, ever.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use intakeq_fs::fake::store::{Endpoint, Store};

/// What `n` saves over an existing file cost: an upload each, a delete of what each
/// replaced, and a listing each that learns the new file's id.
fn saves(n: u64) -> Calls {
    Calls {
        upload: n,
        delete: n,
        list_files: n,
        download: 0,
    }
}

fn names(store: &Store, client: u64) -> Vec<String> {
    let mut v: Vec<String> = store.files_of(client).into_iter().map(|f| f.name).collect();
    v.sort();
    v
}

fn bytes_of(store: &Store, client: u64, name: &str) -> Vec<Vec<u8>> {
    store
        .files_named(client, name)
        .into_iter()
        .map(|f| f.data.to_vec())
        .collect()
}

/// A terminal program run in its own tmux server, typed into with send-keys.
struct Tty {
    socket: String,
}

impl Tty {
    fn start(dir: &Path, home: &Path, cmd: &str) -> Tty {
        let socket = format!(
            "intakeq-fs-test-{}-{}",
            std::process::id(),
            home.display().to_string().len()
        );
        let socket = format!("{socket}-{}", rand_suffix(home));
        let st = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "120", "-y", "30", "-c"])
            .arg(dir)
            .arg(cmd)
            .env("HOME", home)
            .env("TERM", "xterm")
            .status()
            .unwrap();
        assert!(st.success(), "tmux could not start {cmd}");
        Tty { socket }
    }

    fn keys(&self, keys: &[&str]) {
        let st = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_screen(&self, what: &str) {
        let t0 = std::time::Instant::now();
        while !self.screen().contains(what) {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "never showed {what:?}:\n{}",
                self.screen()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn rand_suffix(p: &Path) -> u64 {
    intakeq_fs::core::names::fnv1a(p.as_os_str().as_encoded_bytes())
}

/// A 10 KiB note copied into client 1002 as `note.txt` (from `home`): its text and the
/// client's directory.
fn ten_kib_note(m: &Mount, home: &Path) -> (String, std::path::PathBuf) {
    let text: String = (0..200).map(|i| format!("line {i} of a ten kilobyte note\n")).collect();
    let src = home.join("note.txt");
    fs::write(&src, &text).unwrap();
    let dir = m.p("clients/1002");
    ok("cp", &[&src, &dir.join("note.txt")]);
    (text, dir)
}

#[test]
fn vim_saves_twice_with_one_upload_each_no_warning_and_no_swap_file_on_the_server() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let home = tempfile::tempdir().unwrap();
    let (text, dir) = ten_kib_note(&m, home.path());
    srv.store.reset_counts();
    let vim = Tty::start(&dir, home.path(), "vim note.txt");
    vim.wait_screen("note.txt");
    assert!(
        fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name() == ".note.txt.swp"),
        "vim's swap file is visible in the directory"
    );
    for (k, edit) in ["first edit", "second edit"].iter().enumerate() {
        vim.keys(&["Go", edit, "Escape"]);
        vim.keys(&[":w", "Enter"]);
        let want = format!(
            "{text}{}",
            ["first edit\n", "first edit\nsecond edit\n"][..=k].last().unwrap()
        );
        wait_for(|| bytes_of(&srv.store, 1002, "note.txt") == [want.as_bytes().to_vec()]);
        assert!(!vim.screen().contains("WARNING"), "{}", vim.screen());
    }
    vim.keys(&[":q", "Enter"]);
    wait_for(|| {
        !fs::read_dir(&dir)
            .unwrap()
            .any(|e| e.unwrap().file_name() == ".note.txt.swp")
    });
    assert_eq!(
        names(&srv.store, 1002),
        ["note.txt", "other.txt"],
        "no swap file ever reached it"
    );
    settled(&srv.store, saves(2));
}

/// vim's `:w` twice in a row, the second before the first save's confirming listing:
/// the second uploads at once and its listing names the first save's file, which goes.
/// 2 uploads, 2 deletes, 1 listing for both saves (a listing fewer than two apart).
#[test]
fn vim_saving_twice_in_a_row_costs_one_listing_for_both() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let home = tempfile::tempdir().unwrap();
    let (text, dir) = ten_kib_note(&m, home.path());
    // The copy's own confirming listing comes CONFIRM_SETTLE (2 s) later: not counted.
    std::thread::sleep(std::time::Duration::from_secs(3));
    srv.store.reset_counts();
    let vim = Tty::start(&dir, home.path(), "vim note.txt");
    vim.wait_screen("note.txt");
    // Both saves in one burst of keys: the second comes well within CONFIRM_SETTLE.
    vim.keys(&[
        "Go",
        "first edit",
        "Escape",
        ":w",
        "Enter",
        "Go",
        "second edit",
        "Escape",
        ":w",
        "Enter",
    ]);
    let want = format!("{text}first edit\nsecond edit\n");
    wait_for(|| bytes_of(&srv.store, 1002, "note.txt") == [want.as_bytes().to_vec()]);
    assert!(!vim.screen().contains("WARNING"), "{}", vim.screen());
    vim.keys(&[":q", "Enter"]);
    settled(
        &srv.store,
        Calls {
            upload: 2,
            delete: 2,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(names(&srv.store, 1002), ["note.txt", "other.txt"]);
}

#[test]
fn nano_saves_with_one_upload_and_its_lock_file_stays_home() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let home = tempfile::tempdir().unwrap();
    let dir = m.p("clients/1001");
    ok("cat", &[&dir.join("notes.txt")]);
    srv.store.reset_counts();
    let nano = Tty::start(&dir, home.path(), "nano notes.txt");
    nano.wait_screen("notes.txt");
    nano.keys(&["added by nano "]);
    nano.keys(&["C-o"]);
    nano.wait_screen("File Name to Write");
    nano.keys(&["Enter"]);
    nano.wait_screen("Wrote");
    wait_for(|| bytes_of(&srv.store, 1001, "notes.txt") == [b"added by nano hello notes\n".to_vec()]);
    nano.keys(&["C-x"]);
    assert!(!names(&srv.store, 1001).iter().any(|n| n.ends_with(".swp")));
    settled(&srv.store, saves(1));
}

#[test]
fn sed_i_is_one_upload_and_its_temp_file_never_reaches_the_server() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let file = m.p("clients/1001/notes.txt");
    ok("cat", &[&file]);
    srv.store.reset_counts();
    ok("sed", &[&"-i", &"s/hello/goodbye/", &file]);
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"goodbye notes\n".to_vec()]);
    assert!(!names(&srv.store, 1001).iter().any(|n| n.starts_with("sed")));
    settled(&srv.store, saves(1));
    assert_eq!(fs::read(&file).unwrap(), b"goodbye notes\n");
}

/// `sed -i` when the server refuses the upload: its rename is the save, so it fails and
/// sed says so; the file keeps its old bytes, on the server and in the mount.
#[test]
fn sed_i_whose_upload_is_refused_fails_and_changes_nothing() {
    use intakeq_fs::fake::store::Fault;
    let srv = server(account());
    let m = mount(&srv, &[]);
    let file = m.p("clients/1001/notes.txt");
    ok("cat", &[&file]);
    srv.store.push_fault(
        Some(Endpoint::Upload),
        Fault::Status {
            status: 400,
            retry_after: None,
        },
        None,
    );
    let out = run("sed", &[&"-i", &"s/hello/goodbye/", &file]);
    assert!(!out.status.success(), "sed reports the failed save");
    assert!(stderr_of(&out).contains("cannot rename"), "{}", stderr_of(&out));
    srv.store.clear_faults();
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"hello notes\n".to_vec()]);
    assert_eq!(fs::read(&file).unwrap(), b"hello notes\n");
    assert_eq!(srv.store.count(Endpoint::Delete), 0, "nothing replaced");
}

#[test]
fn two_rsync_runs_into_twins_replace_only_the_file_shown_under_the_name() {
    let store = account();
    let first = store.add_file(1002, "report.pdf", None, &b"original one"[..]);
    store.add_file(1002, "report.pdf", None, &b"original two"[..]);
    let srv = server(store);
    let m = mount(&srv, &[]);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("report.pdf"), b"from rsync").unwrap();
    ok("touch", &[&"-d", &"2020-01-01 10:00", &src.path().join("report.pdf")]);
    let dst = m.p("clients/1002");
    ok("ls", &[&dst]);
    srv.store.reset_counts();
    for _ in 0..2 {
        ok(
            "rsync",
            &[
                &"-a",
                &format!("{}/", src.path().display()),
                &format!("{}/", dst.display()),
            ],
        );
    }
    assert!(
        srv.store.file(&first).is_some(),
        "the twin shown with a tag is never touched"
    );
    let mut held = bytes_of(&srv.store, 1002, "report.pdf");
    held.sort();
    assert_eq!(held, [b"from rsync".to_vec(), b"original one".to_vec()]);
    assert_eq!(fs::read(dst.join("report.pdf")).unwrap(), b"from rsync");
    assert!(!names(&srv.store, 1002).iter().any(|n| n.starts_with(".report")));
    settled(&srv.store, saves(1));
}

#[test]
fn a_shell_redirect_uploads_once_and_the_server_never_holds_an_empty_file() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let old = m.p("clients/1001/notes.txt");
    let new = m.p("clients/1002/out.txt");
    ok("cat", &[&old]);
    ok("ls", &[&m.p("clients/1002")]);
    srv.store.reset_counts();
    let script = format!(
        "(sleep 1; echo done) > '{}' & (sleep 1; echo made) > '{}' & wait",
        old.display(),
        new.display()
    );
    let mut child = Command::new("bash").args(["-c", &script]).spawn().unwrap();
    // While the commands run, the server holds the old bytes and no new file.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"hello notes\n".to_vec()]);
    assert!(srv.store.files_named(1002, "out.txt").is_empty());
    assert!(child.wait().unwrap().success());
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"done\n".to_vec()]);
    assert_eq!(bytes_of(&srv.store, 1002, "out.txt"), [b"made\n".to_vec()]);
    assert_eq!(srv.store.count(Endpoint::Upload), 2, "one upload per redirect");
    assert_eq!(srv.store.count(Endpoint::Delete), 1);
    // Appending is one upload too.
    srv.store.reset_counts();
    ok("bash", &[&"-c", &format!("echo more >> '{}'", new.display())]);
    assert_eq!(bytes_of(&srv.store, 1002, "out.txt"), [b"made\nmore\n".to_vec()]);
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
}

/// Two saves of one file in a row, the second before the first one's confirming listing
/// (a second `:w` within `CONFIRM_SETTLE`): the second uploads at once, and the listing
/// that confirms it also names the first save's file, which goes. 2 uploads, 2 deletes
/// and 1 listing for both (before: a listing more, taken before the second upload).
#[test]
fn a_second_save_right_after_the_first_costs_no_listing_more() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let f = m.p("clients/1001/notes.txt");
    ok("cat", &[&f]);
    srv.store.reset_counts();
    let script = format!(
        "printf 'first save\\n' > '{0}' && printf 'first save\\nsecond save\\n' > '{0}'",
        f.display()
    );
    ok("bash", &[&"-c", &script]);
    assert_eq!(
        bytes_of(&srv.store, 1001, "notes.txt"),
        [b"first save\nsecond save\n".to_vec()]
    );
    settled(
        &srv.store,
        Calls {
            upload: 2,
            delete: 2,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(std::fs::read(&f).unwrap(), b"first save\nsecond save\n");
}

/// A script whose commands are forked children writing into one redirect: each child's
/// exit closes its copy of the descriptor, and only the close of the process that
/// opened the file (the shell running the script) uploads. Ten commands, one upload
/// and its one confirming listing; a group command and a pipe into `tee` the same.
#[test]
fn a_scripts_redirect_uploads_once_whatever_the_script_forks() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1002");
    ok("ls", &[&dir]);
    let run = |script: &str| {
        let full = format!("cd '{}' && {script}", dir.display());
        let out = Command::new("bash").args(["-c", &full]).output().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let one_new_file = Calls {
        upload: 1,
        delete: 0,
        list_files: 1,
        download: 0,
    };

    srv.store.reset_counts();
    run("bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do /bin/echo line $i; done' > nightly.log");
    let want: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    assert_eq!(
        bytes_of(&srv.store, 1002, "nightly.log"),
        [want.into_bytes()],
        "on the server when the script returned"
    );
    settled(&srv.store, one_new_file);

    srv.store.reset_counts();
    run("{ /bin/echo one; sleep 1; /bin/echo two; } > group.txt");
    assert_eq!(bytes_of(&srv.store, 1002, "group.txt"), [b"one\ntwo\n".to_vec()]);
    settled(&srv.store, one_new_file);

    srv.store.reset_counts();
    run("printf 'a\\nb\\n' | tee tee.txt > /dev/null");
    assert_eq!(bytes_of(&srv.store, 1002, "tee.txt"), [b"a\nb\n".to_vec()]);
    settled(&srv.store, one_new_file);

    // Over an existing file: one upload and the delete of what it replaces.
    srv.store.reset_counts();
    run("bash -c '/bin/echo again; /bin/echo and again' > nightly.log");
    assert_eq!(
        bytes_of(&srv.store, 1002, "nightly.log"),
        [b"again\nand again\n".to_vec()]
    );
    settled(&srv.store, saves(1));
    assert_eq!(
        names(&srv.store, 1002).iter().filter(|n| *n == "nightly.log").count(),
        1
    );
}

/// Write-only handles bypass the page cache (`FOPEN_DIRECT_IO`): a reader holding its
/// own handle, whose pages are cached, sees what a write-only handle then overwrote in
/// place, as does a new reader, and the server gets the bytes once per close.
#[test]
fn a_reader_sees_what_a_write_only_handle_overwrote_in_place() {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let srv = server(account());
    let m = mount(&srv, &[]);
    let path = m.p("clients/1002/scan.bin");
    ok("ls", &[&m.p("clients/1002")]);
    srv.store.reset_counts();
    fs::write(&path, vec![b'A'; 200_000]).unwrap();
    let mut reader = fs::File::open(&path).unwrap();
    let mut seen = Vec::new();
    reader.read_to_end(&mut seen).unwrap();
    assert_eq!(seen, vec![b'A'; 200_000]);
    let writer = fs::OpenOptions::new().write(true).open(&path).unwrap();
    writer.write_at(b"ZZZZ", 0).unwrap();
    writer.write_at(b"YYYY", 150_000).unwrap();
    drop(writer);
    let at = |f: &fs::File, off: u64| {
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, off).unwrap();
        b
    };
    assert_eq!(
        (at(&reader, 0), at(&reader, 150_000)),
        (*b"ZZZZ", *b"YYYY"),
        "the open reader"
    );
    let again = fs::File::open(&path).unwrap();
    assert_eq!(
        (at(&again, 0), at(&again, 150_000)),
        (*b"ZZZZ", *b"YYYY"),
        "a new reader"
    );
    let mut want = vec![b'A'; 200_000];
    want[..4].copy_from_slice(b"ZZZZ");
    want[150_000..150_004].copy_from_slice(b"YYYY");
    assert_eq!(bytes_of(&srv.store, 1002, "scan.bin"), [want]);
    // Two closes, two uploads. The second replaces the first, which was accepted but not
    // listed yet: one listing finds it (no download to compare: it holds the bytes from
    // before the change) and it is deleted once the second has landed; one more listing
    // learns the second's id.
    settled(
        &srv.store,
        Calls {
            upload: 2,
            delete: 1,
            list_files: 2,
            download: 0,
        },
    );
}

#[test]
fn sqlite3_keeps_its_journal_home_and_uploads_once_per_transaction() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let db = m.p("clients/1002/visits.db");
    ok("ls", &[&m.p("clients/1002")]);
    srv.store.reset_counts();
    ok(
        "sqlite3",
        &[
            &db,
            &"create table visits(day text); insert into visits values ('monday');",
        ],
    );
    assert_eq!(
        names(&srv.store, 1002),
        ["other.txt", "visits.db"],
        "no -journal on the server"
    );
    let after_create = calls(&srv.store);
    assert_eq!(
        after_create.upload, 2,
        "two transactions (create, insert), one upload each"
    );
    srv.store.reset_counts();
    ok("sqlite3", &[&db, &"insert into visits values ('tuesday');"]);
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
    assert_eq!(srv.store.count(Endpoint::Delete), 1);
    assert_eq!(ok("sqlite3", &[&db, &"select count(*) from visits;"]).trim(), "2");
    let on_server = tempfile::tempdir().unwrap();
    let copy = on_server.path().join("copy.db");
    fs::write(&copy, &bytes_of(&srv.store, 1002, "visits.db")[0]).unwrap();
    assert_eq!(ok("sqlite3", &[&copy, &"select count(*) from visits;"]).trim(), "2");
}

#[test]
fn gio_save_and_gio_copy_are_one_upload_each() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let file = m.p("clients/1001/notes.txt");
    ok("cat", &[&file]);
    srv.store.reset_counts();
    let out = Command::new("sh")
        .args(["-c", &format!("echo saved by gio | gio save '{}'", file.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"saved by gio\n".to_vec()]);
    assert!(!names(&srv.store, 1001).iter().any(|n| n.starts_with(".goutputstream")));
    settled(&srv.store, saves(1));
    srv.store.reset_counts();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("scan.txt"), b"copied by gio").unwrap();
    ok(
        "gio",
        &[&"copy", &src.path().join("scan.txt"), &m.p("clients/1001/scan.txt")],
    );
    assert_eq!(bytes_of(&srv.store, 1001, "scan.txt"), [b"copied by gio".to_vec()]);
    assert_eq!(srv.store.count(Endpoint::Upload), 1);
}

#[test]
fn cp_over_a_twin_twice_shows_the_users_bytes_and_keeps_the_other_twin() {
    let store = account();
    let older = store.add_file(1002, "dup.txt", None, &b"older twin"[..]);
    store.add_file(1002, "dup.txt", None, &b"newer twin"[..]);
    let srv = server(store);
    let m = mount(&srv, &[]);
    let src = tempfile::tempdir().unwrap();
    let tagged = m.p(&format!("clients/1002/dup ({older}).txt"));
    for mine in ["mine", "mine again"] {
        fs::write(src.path().join("mine.txt"), mine).unwrap();
        ok("cp", &[&src.path().join("mine.txt"), &m.p("clients/1002/dup.txt")]);
        assert_eq!(fs::read(m.p("clients/1002/dup.txt")).unwrap(), mine.as_bytes());
        assert_eq!(fs::read(&tagged).unwrap(), b"older twin");
    }
    assert!(srv.store.file(&older).is_some());
    assert_eq!(srv.store.files_named(1002, "dup.txt").len(), 2);
}

#[test]
fn an_office_style_save_is_one_upload_and_its_lock_file_never_reaches_the_server() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1001");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    // LibreOffice: lock file, write a temp file beside the document, rename it over,
    // drop the lock at close.
    let script = "echo 'owner' > '.~lock.notes.txt#' && printf 'office bytes' > lu4711abcd.tmp \
                  && mv lu4711abcd.tmp notes.txt && rm '.~lock.notes.txt#'";
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"office bytes".to_vec()]);
    assert!(!names(&srv.store, 1001)
        .iter()
        .any(|n| n.contains("lock") || n.ends_with(".tmp")));
    settled(&srv.store, saves(1));
}

/// MS Office's save (as Word does it through Samba): owner file `~$`, new bytes to
/// `~WRL0001.tmp`, the document set aside as `~WRL0002.tmp`, the new bytes renamed over
/// the document, the set-aside copy and the owner file deleted. One upload and one
/// delete; no `~` name ever reaches the server, and the document is on the server
/// throughout.
#[test]
fn an_ms_office_save_is_one_upload_and_one_delete_and_its_tmp_files_stay_home() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1001");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    let step = |script: &str| {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", stderr_of(&out));
    };
    step("echo owner > '~$notes.txt' && printf 'word bytes' > '~WRL0001.tmp'");
    step("mv notes.txt '~WRL0002.tmp'");
    assert_eq!(
        srv.store.total_requests(),
        0,
        "setting the document aside costs nothing"
    );
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"hello notes\n".to_vec()]);
    step("mv '~WRL0001.tmp' notes.txt && rm '~WRL0002.tmp' '~$notes.txt'");
    assert_eq!(bytes_of(&srv.store, 1001, "notes.txt"), [b"word bytes".to_vec()]);
    assert!(!names(&srv.store, 1001).iter().any(|n| n.starts_with('~')));
    settled(&srv.store, saves(1));
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"word bytes");
    let mut listed: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["Insurance", "Intake Forms", "_folder-gone", "notes.txt"]);
}

/// A save Office gave up on (it renames the document back) and a `~WRL….tmp` left by a
/// crashed Office cost nothing, however long they stay.
#[test]
fn an_abandoned_office_save_costs_nothing() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1001");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    let out = Command::new("sh")
        .args([
            "-c",
            "printf half > '~WRL0009.tmp' && mv notes.txt '~WRL0003.tmp' && mv '~WRL0003.tmp' notes.txt",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Longer than a temp file waits for its rename (`patterns::HOLD_IDLE`, 5 s).
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(srv.store.total_requests(), 0);
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"hello notes\n");
    assert_eq!(fs::read(dir.join("~WRL0009.tmp")).unwrap(), b"half");
}

/// Explorer's (and Finder's) "New > Text Document": an empty file is created, then the
/// person types its name. Renamed within seconds, it is uploaded once, under that name.
#[test]
fn a_new_empty_file_renamed_within_seconds_is_uploaded_once_under_its_final_name() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1002");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    fs::File::create(dir.join("New Text Document.txt")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(srv.store.total_requests(), 0, "nothing sent while the person types");
    fs::rename(dir.join("New Text Document.txt"), dir.join("phone log.txt")).unwrap();
    let on_server = srv.store.files_named(1002, "phone log.txt");
    assert_eq!(on_server.len(), 1);
    assert!(on_server[0].data.is_empty());
    settled(
        &srv.store,
        Calls {
            upload: 1,
            delete: 0,
            list_files: 1,
            download: 0,
        },
    );
    assert_eq!(names(&srv.store, 1002), ["other.txt", "phone log.txt"]);
}

#[test]
fn names_the_upload_cannot_carry_are_refused_with_einval_and_nothing_is_sent() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("d.txt"), b"data").unwrap();
    ok("ls", &[&m.p("clients/1002")]);
    srv.store.reset_counts();
    for bad in ["new\nline.txt", "Icon\r", " leading.txt"] {
        let err = fs::copy(src.path().join("d.txt"), m.p("clients/1002").join(bad)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
    }
    assert_eq!(srv.store.total_requests(), 0);
    assert_eq!(names(&srv.store, 1002), ["other.txt"]);
}

#[test]
fn scratch_files_are_private_cost_nothing_and_are_gone_after_unmount() {
    let srv = server(account());
    let m = mount(&srv, &[]);
    let dir = m.p("clients/1001");
    ok("ls", &[&dir]);
    srv.store.reset_counts();
    fs::write(dir.join(".notes.txt.swp"), b"swap of the text being edited").unwrap();
    fs::write(dir.join("notes.txt~"), b"backup").unwrap();
    assert_eq!(
        fs::read(dir.join(".notes.txt.swp")).unwrap(),
        b"swap of the text being edited"
    );
    let listed: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(listed.contains(&"notes.txt~".to_string()), "{listed:?}");
    assert_eq!(srv.store.total_requests(), 0, "scratch files cost no call");
    // In the private overlay, 0600 in a 0700 directory.
    let scratch = account_spool(m.dir.path(), &srv).join("scratch");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&scratch).unwrap().permissions().mode() & 0o777, 0o700);
    for e in fs::read_dir(&scratch).unwrap() {
        assert_eq!(e.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 2);
    let (status, _, dir) = m.unmount();
    assert!(status.success());
    let scratch = account_spool(dir.path(), &srv).join("scratch");
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "removed at unmount");
    let mut want = ["card.png", "consent.pdf", "consent.pdf", "lost.txt", "notes.txt"];
    want.sort();
    assert_eq!(names(&srv.store, 1001), want, "no scratch file ever reached the server");
}
