//! Which names the mount keeps to itself: scratch files of editors and databases stay
//! in a private local overlay and never reach the server; temp files of atomic savers
//! wait for their rename. Every rule is a pure function of the name
//! (docs/SEMANTICS.md, "Scratch and temp files").

/// What a new file's name says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A clinic document: uploaded at close.
    Ordinary,
    /// An editor's or database's scratch file (swap, lock, backup, journal): kept in the
    /// private local overlay, visible to the programs that use it, never uploaded.
    Scratch,
    /// An atomic saver's temp file (written, then renamed over the real name): not
    /// uploaded at close; its rename is the save. Never renamed, it is uploaded under
    /// its own name once it has been closed and left alone for `HOLD_IDLE`.
    Temp,
}

/// How long a closed temp file waits for its rename before it is uploaded as it is.
pub const HOLD_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a new file closed empty waits before it is uploaded as it is: Explorer's
/// and Finder's "New text document" create the file, then the person types its name.
/// Renamed (or written) sooner, it is uploaded once, under its final name.
pub const HOLD_EMPTY: std::time::Duration = std::time::Duration::from_secs(10);

/// The class of a file name (see [`Class`]).
pub fn class(name: &str) -> Class {
    if is_scratch(name) {
        Class::Scratch
    } else if is_temp(name) {
        Class::Temp
    } else {
        Class::Ordinary
    }
}

fn is_scratch(name: &str) -> bool {
    let dotted = name.len() > 1 && name.starts_with('.');
    // vim and nano swap and lock files: `.name.swp`, `.name.swo` … `.name.swa`, `.name.swx`.
    let swap = dotted
        && name.len() >= 5
        && name.is_char_boundary(name.len() - 4)
        && name[name.len() - 4..].starts_with(".sw")
        && name.as_bytes()[name.len() - 1].is_ascii_lowercase();
    swap
        // Backups of vim, emacs, gedit, nano: `name~`.
        || (name.len() > 1 && name.ends_with('~'))
        // emacs auto-save `#name#` and lock `.#name`.
        || (name.len() > 2 && name.starts_with('#') && name.ends_with('#'))
        || name.starts_with(".#")
        // LibreOffice lock `.~lock.name#`, MS Office owner file `~$name`.
        || (name.starts_with(".~lock.") && name.ends_with('#'))
        || name.starts_with("~$")
        // MS Office's save files (`~WRL0001.tmp`, `~WRD0000.tmp`): the new bytes before
        // their rename over the document, and the document set aside meanwhile.
        || is_office_save(name)
        // Kate swap `.name.kate-swp`.
        || name.ends_with(".kate-swp")
        // SQLite's rollback journal, write-ahead log and shared memory.
        || ["-journal", "-wal", "-shm"].iter().any(|s| name.len() > s.len() && name.ends_with(s))
        // Files the kernel's FUSE and NFS clients keep for unlinked open files.
        || name.starts_with(".fuse_hidden")
        || name.starts_with(".nfs")
        // vim's "can I create files here?" probe: 4913, then 4913 + 123·k.
        || is_vim_probe(name)
}

/// MS Office's save files: `~WR` + letter + digits/hex + `.tmp` (`~WRL0001.tmp`).
/// A document renamed onto such a name is being set aside while its new version is
/// renamed over it: the mount keeps it under that name locally (no call).
pub fn is_office_save(name: &str) -> bool {
    let Some(mid) = name.strip_prefix("~WR").and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    let mut b = mid.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_uppercase()) && mid.len() >= 2 && b.all(|c| c.is_ascii_hexdigit())
}

fn is_vim_probe(name: &str) -> bool {
    name.len() <= 6
        && name.bytes().all(|b| b.is_ascii_digit())
        && name.parse::<u32>().is_ok_and(|n| n >= 4913 && (n - 4913) % 123 == 0)
}

fn is_temp(name: &str) -> bool {
    let random6 = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    // GIO (GTK file managers and editors): `.goutputstream-XXXXXX`.
    name.starts_with(".goutputstream-")
        // sed -i: `sedXXXXXX`.
        || (name.len() == 9 && name.starts_with("sed") && random6(&name[3..]))
        // rsync: `.name.XXXXXX`.
        || (name.len() > 8
            && name.starts_with('.')
            && name.is_char_boundary(name.len() - 7)
            && name.as_bytes()[name.len() - 7] == b'.'
            && random6(&name[name.len() - 6..]))
        // LibreOffice `luXXXX.tmp` and other `.tmp` savers (MS Office's are scratch).
        || (name.len() > 4 && name.ends_with(".tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_of_common_tools_are_recognised() {
        for n in [
            ".notes.txt.swp",
            ".notes.txt.swo",
            ".notes.txt.swx",
            ".bashrc.swp",
            "notes.txt~",
            "#notes.txt#",
            ".#notes.txt",
            ".~lock.report.odt#",
            "~$report.docx",
            "~WRL0001.tmp",
            "~WRD0000.tmp",
            "~WRL3f2a.tmp",
            ".notes.txt.kate-swp",
            "db.sqlite-journal",
            "db.sqlite-wal",
            "db.sqlite-shm",
            ".fuse_hidden0000000a00000001",
            ".nfs000000000123",
            "4913",
            "5036",
        ] {
            assert_eq!(class(n), Class::Scratch, "{n}");
        }
    }

    #[test]
    fn atomic_save_temps_are_recognised() {
        for n in [
            ".goutputstream-ABC123",
            "sedAb12Cd",
            ".report.pdf.Xy12Ab",
            "lu12345abcd.tmp",
            "~notes.tmp",
        ] {
            assert_eq!(class(n), Class::Temp, "{n}");
        }
    }

    #[test]
    fn clinic_documents_are_ordinary() {
        for n in [
            "notes.txt",
            "insurance card.png",
            ".hidden-note",
            "sed",
            "sedimentary.pdf",
            "swp",
            ".swp",
            "~",
            "#",
            "4914",
            "journal",
            "my-journal.pdf",
            "-wal",
            "x.tmp.pdf",
        ] {
            assert_eq!(class(n), Class::Ordinary, "{n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn classifying_never_panics(name in "\\PC{0,40}") {
            let _ = class(&name);
        }
    }
}
