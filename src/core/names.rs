//! How IntakeQ file and folder names become directory entries: illegal names are
//! mapped to legal ones, duplicates get distinct names, and probe names that desktop
//! tools ask for constantly are recognised; names going the other way, out in an
//! upload, pass one check ([`uncarriable`]). Every mapping here is a pure function of
//! the listing, so it is stable across listings and remounts (docs/SEMANTICS.md).

use std::collections::HashSet;

/// Longest name Linux accepts, in bytes.
pub const NAME_MAX: usize = 255;

/// Make one name legal: `/` becomes `∕` (U+2215), NUL becomes `␀` (U+2400), the
/// empty name, `.` and `..` get a `_` in front (`_`, `_.`, `_..`) and a name over
/// 255 bytes is shortened (keeping its extension) and marked with a hash of the
/// full name so two long names sharing a prefix stay distinct.
pub fn legal(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| match c {
            '/' => '\u{2215}',
            '\0' => '\u{2400}',
            c => c,
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        s.insert(0, '_');
    }
    if s.len() > NAME_MAX {
        s = shorten(&s, raw);
    }
    s
}

/// Shorten to at most NAME_MAX bytes: `<prefix>~<hash8><.ext>`.
fn shorten(s: &str, raw: &str) -> String {
    let tag = format!("~{:08x}", fnv1a(raw.as_bytes()) as u32);
    let ext = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let room = NAME_MAX - tag.len() - ext.len();
    let mut cut = room.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}{}", &s[..cut], tag, ext)
}

/// FNV-1a, 64 bit: a stable hash (std's hasher is not stable across releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Insert ` (<tag>)` before the extension: `consent.pdf` -> `consent (f123).pdf`,
/// shortening first if needed.
pub fn with_tag(name: &str, tag: &str) -> String {
    let suffix = format!(" ({tag})");
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let mut stem = stem.to_string();
    let max_stem = NAME_MAX.saturating_sub(suffix.len() + ext.len());
    if stem.len() > max_stem {
        let mut cut = max_stem;
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem.truncate(cut);
    }
    format!("{stem}{suffix}{ext}")
}

/// Longest file id used as a twin's tag as it is.
pub const MAX_PLAIN_TAG: usize = 32;

/// The tag that tells a twin apart: the file id itself when it is short (at most
/// [`MAX_PLAIN_TAG`] bytes) and made only of ASCII letters, digits, `-` and `_`;
/// otherwise `#` and 8 hex digits of a hash (FNV-1a) of the id. Stable, short, and
/// never a `/`, a control character or anything a shell would trip on.
pub fn safe_tag(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= MAX_PLAIN_TAG
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        id.to_string()
    } else {
        let h = fnv1a(id.as_bytes());
        format!("#{:08x}", (h ^ (h >> 32)) as u32)
    }
}

/// Give each item of one directory a distinct legal name. `items` are
/// `(raw name, tag)` already in priority order (the first keeps the plain name);
/// `taken` holds names already used in the directory (sub-directories). The tag is
/// the file id, so a file's name depends only on its own id and on which files
/// sharing its name are older: stable while the set does not change. Tags pass
/// through [`safe_tag`] first.
pub fn assign<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>, taken: &mut HashSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (raw, tag) in items {
        let tag = safe_tag(tag);
        let tag = tag.as_str();
        let base = legal(raw);
        let mut name = base.clone();
        if taken.contains(&name) {
            name = with_tag(&base, tag);
            let mut n = 2;
            while taken.contains(&name) {
                name = with_tag(&base, &format!("{tag}-{n}"));
                n += 1;
            }
        }
        taken.insert(name.clone());
        out.push(name);
    }
    out
}

/// Names that desktop tools and shells probe for and that IntakeQ never holds unless
/// someone uploads them: answered ENOENT without an API call when the directory's
/// listing is not in memory, and refused on create (docs/SEMANTICS.md).
pub fn is_probe_name(name: &str) -> bool {
    const EXACT: &[&str] = &[
        ".DS_Store",
        ".hidden",
        ".directory",
        ".localized",
        ".Spotlight-V100",
        ".Trashes",
        ".fseventsd",
        ".metadata_never_index",
        ".metadata_never_index_unless_rootfs",
        ".xdg-volume-info",
        ".git",
        ".svn",
        ".hg",
        ".bzr",
        "desktop.ini",
        "Desktop.ini",
        "Thumbs.db",
        "autorun.inf",
        "AutoRun.inf",
        ".autorun.inf",
        "folder.jpg",
        "Folder.jpg",
        ".VolumeIcon.icns",
        ".nomedia",
        ".envrc",
    ];
    EXACT.contains(&name) || name.starts_with("._") || name.starts_with(".Trash")
}

/// Why an upload could not carry this name verbatim, if it could not: the one check of
/// every outgoing name (create, rename, overwrite or truncate of a listed file, crash
/// resume, and the send itself). The name travels as `filename="..."` in a multipart
/// header, where the HTTP client escapes only some characters, and the server decides
/// how to read the escapes. Control characters (`\n`, `\r`, tab, DEL, C1) and line
/// separators break the header (a CR/LF name can inject a header and the server stores
/// a cut name); a backslash and a double quote go as `\\` and `\"`, which a server may
/// keep; leading or trailing white space is stripped by servers. A name that comes
/// back different is never confirmed by a listing, so such names are refused (EINVAL)
/// before any byte is staged (docs/SEMANTICS.md, "Names the upload cannot carry").
pub fn uncarriable(name: &str) -> Option<&'static str> {
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        Some("control characters cannot be carried by the upload")
    } else if name.contains('\\') {
        Some("a backslash does not survive the upload")
    } else if name.contains('"') {
        Some("a double quote does not survive the upload")
    } else if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        Some("leading or trailing white space does not survive the upload")
    } else {
        None
    }
}

/// Client directories are named by the numeric id, canonical form only (`0012` is not `12`).
pub fn parse_client_id(name: &str) -> Option<u64> {
    let id: u64 = name.parse().ok()?;
    (id.to_string() == name && id > 0).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illegal_names_become_legal() {
        assert_eq!(legal("a/b.txt"), "a\u{2215}b.txt");
        assert_eq!(legal("."), "_.");
        assert_eq!(legal(".."), "_..");
        assert_eq!(legal(""), "_");
        assert_eq!(legal("nul\0byte"), "nul\u{2400}byte");
        assert_eq!(legal("Ünïcødé 表格.pdf"), "Ünïcødé 表格.pdf");
    }

    #[test]
    fn long_names_are_shortened_stably_and_distinctly() {
        let a = format!("{}.pdf", "é".repeat(200));
        let b = format!("{}x.pdf", "é".repeat(200));
        let (la, lb) = (legal(&a), legal(&b));
        assert!(la.len() <= NAME_MAX && lb.len() <= NAME_MAX);
        assert!(la.ends_with(".pdf"));
        assert_ne!(la, lb);
        assert_eq!(la, legal(&a));
    }

    #[test]
    fn duplicates_get_the_id_and_first_keeps_plain_name() {
        let mut taken = HashSet::from(["Insurance".to_string()]);
        let names = assign(
            [
                ("consent.pdf", "f1"),
                ("consent.pdf", "f2"),
                ("Insurance", "f3"),
                ("README", "f4"),
                ("README", "f5"),
            ],
            &mut taken,
        );
        assert_eq!(
            names,
            [
                "consent.pdf",
                "consent (f2).pdf",
                "Insurance (f3)",
                "README",
                "README (f5)"
            ]
        );
    }

    #[test]
    fn a_name_that_already_looks_tagged_still_gets_a_distinct_one() {
        let mut taken = HashSet::new();
        let names = assign([("a (f2).txt", "f1"), ("a.txt", "f0"), ("a.txt", "f2")], &mut taken);
        assert_eq!(names[2], "a (f2-2).txt");
    }

    #[test]
    fn names_the_upload_cannot_carry_are_told_apart() {
        for n in [
            "new\nline.txt",
            "Icon\r",
            "evil\r\nX-Injected: 1.txt",
            "tab\tx",
            "esc\u{1b}[31m.txt",
            "del\u{7f}",
            "c1\u{85}x",
            "ls\u{2028}x",
            "back\\slash",
            "C:\\fakepath\\scan.pdf",
            "q\"uote.txt",
            " lead",
            "trail ",
            "nbsp\u{a0}",
        ] {
            assert!(uncarriable(n).is_some(), "{n:?}");
        }
        for n in [
            "plain.txt",
            "é ü 日本.txt",
            "semi;colon.txt",
            "a'b.txt",
            "mid space.txt",
            "pct%22.txt",
        ] {
            assert_eq!(uncarriable(n), None, "{n:?}");
        }
    }

    #[test]
    fn probe_names() {
        assert!(is_probe_name(".DS_Store"));
        assert!(is_probe_name("._consent.pdf"));
        assert!(is_probe_name(".Trash-1000"));
        assert!(!is_probe_name("consent.pdf"));
        assert!(!is_probe_name(".notes.txt"));
    }

    #[test]
    fn client_ids_are_canonical_numbers() {
        assert_eq!(parse_client_id("1001"), Some(1001));
        assert_eq!(parse_client_id("01001"), None);
        assert_eq!(parse_client_id("0"), None);
        assert_eq!(parse_client_id("abc"), None);
    }

    #[test]
    fn twin_tags_are_short_and_safe_whatever_the_id() {
        assert_eq!(safe_tag("f00000004"), "f00000004");
        assert_eq!(safe_tag("abc-DEF_123"), "abc-DEF_123");
        for odd in ["a/b", "..", ".", "", "x y", "\u{0}", &"x".repeat(33), &"é".repeat(150)] {
            let t = safe_tag(odd);
            assert_eq!(t.len(), 9, "{odd:?} -> {t}");
            assert!(
                t.starts_with('#') && t[1..].bytes().all(|b| b.is_ascii_hexdigit()),
                "{t}"
            );
            assert_eq!(t, safe_tag(odd), "stable");
        }
        assert_ne!(safe_tag("a/b"), safe_tag("a/c"));
        let mut taken = HashSet::new();
        let names = assign([("x.pdf", "a/b"), ("x.pdf", "../../etc")], &mut taken);
        assert_eq!(names[0], "x.pdf");
        assert!(
            !names[1].contains('/') && names[1].starts_with("x (#") && names[1].ends_with(").pdf"),
            "{}",
            names[1]
        );
    }

    proptest::proptest! {
        #[test]
        fn mapping_never_panics_and_names_are_legal_and_distinct(
            items in proptest::collection::vec((".{0,300}", ".{0,200}"), 0..12),
            taken0 in proptest::collection::hash_set(".{0,20}", 0..4),
        ) {
            let mut taken: HashSet<String> = taken0.iter().map(|t| legal(t)).collect();
            let before = taken.clone();
            let names = assign(items.iter().map(|(n, t)| (n.as_str(), t.as_str())), &mut taken);
            proptest::prop_assert_eq!(names.len(), items.len());
            let distinct: HashSet<&String> = names.iter().collect();
            proptest::prop_assert_eq!(distinct.len(), names.len());
            for n in &names {
                proptest::prop_assert!(!n.is_empty() && n.len() <= NAME_MAX, "{:?}", n);
                proptest::prop_assert!(!n.contains('/') && !n.contains('\0'));
                proptest::prop_assert!(n != "." && n != "..");
                proptest::prop_assert!(!before.contains(n));
            }
            for (raw, _) in &items {
                let _ = is_probe_name(raw);
                let _ = parse_client_id(raw);
                let _ = uncarriable(raw);
            }
        }
    }
}
