//! The demo account served by `intakeq-fs demo` (clients, folders and files chosen to
//! exercise every awkward case), bulk clients for tests and benchmarks, and the
//! deterministic pseudo-random bytes the fake uses for file contents.

use bytes::Bytes;

use super::store::Store;
use crate::remote::ClientId;

/// Folder ids of the demo account.
pub const FOLDER_INTAKE: &str = "fo-intake";
pub const FOLDER_INSURANCE: &str = "fo-insurance";
pub const FOLDER_CONSENT: &str = "fo-consent";
/// A folder id that files refer to but `GET folders` does not list.
pub const FOLDER_UNLISTED: &str = "fo-retired";

/// `len` deterministic pseudo-random bytes from `seed` (splitmix64-seeded xorshift64*).
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Bytes {
    let mut state = splitmix64(seed);
    if state == 0 {
        state = 0x9E37_79B9_7F4A_7C15;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Add a client with `n` files `doc-0001.txt`.. of `size` pseudo-random bytes each,
/// all at the client's top level.
pub fn add_bulk_client(store: &Store, client_id: ClientId, n: usize, size: usize) {
    store.add_client(client_id, "Bulk", &format!("Client{client_id}"));
    for i in 1..=n {
        let seed = client_id.wrapping_mul(1_000_003).wrapping_add(i as u64);
        store.add_file(
            client_id,
            &format!("doc-{i:04}.txt"),
            None,
            pseudo_random_bytes(seed, size),
        );
    }
}

/// The sample account for `intakeq-fs demo`.
pub fn demo_store() -> Store {
    let s = Store::new();
    s.add_folder(FOLDER_INTAKE, "Intake Forms");
    s.add_folder(FOLDER_INSURANCE, "Insurance");
    s.add_folder(FOLDER_CONSENT, "Consent Forms");

    s.add_client(1001, "Maria", "Alvarez");
    s.add_client(1002, "James", "Whitaker");
    s.add_client(1003, "Priya", "Natarajan");
    s.add_client(1004, "Tomás", "Okafor");
    s.add_client(1005, "Hannah", "Lindqvist");

    // 1001: a bit of everything.
    s.add_file(
        1001,
        "session-notes.txt",
        None,
        text_note("Maria Alvarez", "Initial consultation. Discussed goals and schedule."),
    );
    s.add_file(
        1001,
        "intake-form.pdf",
        Some(FOLDER_INTAKE),
        tiny_pdf("Intake form - Maria Alvarez"),
    );
    s.add_file(1001, "insurance-card.png", Some(FOLDER_INSURANCE), tiny_png(16, 10));
    s.add_file(1001, "payments.csv", None, payments_csv());
    s.add_file(
        1001,
        "scan-archive.bin",
        None,
        pseudo_random_bytes(1001, 3 * 1024 * 1024),
    );
    s.add_file(1001, "empty.txt", None, Bytes::new());
    s.add_file(
        1001,
        "old-referral.pdf",
        Some(FOLDER_UNLISTED),
        tiny_pdf("Referral letter (folder no longer listed)"),
    );

    // 1002: duplicate names, in one folder and at the top level.
    s.add_file(
        1002,
        "consent.pdf",
        Some(FOLDER_CONSENT),
        tiny_pdf("Consent form, first signature"),
    );
    s.add_file(
        1002,
        "consent.pdf",
        Some(FOLDER_CONSENT),
        tiny_pdf("Consent form, second signature"),
    );
    s.add_file(
        1002,
        "notes.txt",
        None,
        text_note("James Whitaker", "First notes file."),
    );
    s.add_file(
        1002,
        "notes.txt",
        None,
        text_note("James Whitaker", "Second notes file, same name."),
    );

    // 1003: awkward names.
    s.add_file(1003, "a/b report.pdf", None, tiny_pdf("A name with a slash"));
    s.add_file(1003, ".", None, Bytes::from_static(b"named dot\n"));
    s.add_file(1003, "..", None, Bytes::from_static(b"named dot-dot\n"));
    s.add_file(1003, "Ünïcødé 表格.pdf", Some(FOLDER_INTAKE), tiny_pdf("Unicode name"));
    let long = format!("{}.txt", "very-long-name-".repeat(20));
    s.add_file(1003, &long, None, Bytes::from_static(b"a name longer than 255 bytes\n"));
    s.add_file(
        1003,
        "Session notes 2024-03-01.txt",
        None,
        text_note("Priya Natarajan", "A name with spaces."),
    );

    // 1004: a few files in folders.
    s.add_file(
        1004,
        "intake-form.pdf",
        Some(FOLDER_INTAKE),
        tiny_pdf("Intake form - Tomás Okafor"),
    );
    s.add_file(1004, "insurance-front.png", Some(FOLDER_INSURANCE), tiny_png(8, 8));

    // 1005 has no files.
    s
}

fn text_note(who: &str, body: &str) -> Bytes {
    Bytes::from(format!(
        "Client: {who}\nClinician: Dr. R. Chen\n\n{body}\n\nPlan: follow up in two weeks.\n"
    ))
}

fn payments_csv() -> Bytes {
    let mut s = String::from("date,description,amount\n");
    for (i, amount) in [120, 120, 95, 120, 60].iter().enumerate() {
        s.push_str(&format!("2024-0{}-15,Session,{amount}.00\n", i + 1));
    }
    Bytes::from(s)
}

/// A one-page PDF with a line of text and a correct cross-reference table.
fn tiny_pdf(text: &str) -> Bytes {
    let text: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && c != '(' && c != ')' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let stream = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{obj}\nendobj\n", i + 1));
    }
    let xref = out.len();
    out.push_str(&format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1));
    for off in offsets {
        out.push_str(&format!("{off:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    Bytes::from(out)
}

/// A valid RGB PNG (a colour gradient), stored with uncompressed deflate blocks.
fn tiny_png(width: u32, height: u32) -> Bytes {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.push((x * 255 / width.max(1)) as u8);
            raw.push((y * 255 / height.max(1)) as u8);
            raw.push(0x80);
        }
    }
    // zlib stream: header, stored blocks, Adler-32.
    let mut z = vec![0x78, 0x01];
    let mut chunks = raw.chunks(65535).peekable();
    if chunks.peek().is_none() {
        z.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(c) = chunks.next() {
        z.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(c);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB

    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    Bytes::from(out)
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_bytes_are_deterministic_and_varied() {
        let a = pseudo_random_bytes(7, 1000);
        assert_eq!(a, pseudo_random_bytes(7, 1000));
        assert_ne!(a, pseudo_random_bytes(8, 1000));
        assert_eq!(pseudo_random_bytes(7, 13), a.slice(..13));
        assert_eq!(pseudo_random_bytes(0, 0).len(), 0);
    }

    #[test]
    fn crc_and_adler_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn demo_has_the_awkward_cases() {
        let s = demo_store();
        assert_eq!(s.lock().clients.len(), 5);
        let names: Vec<String> = s.files_of(1003).into_iter().map(|f| f.name).collect();
        for n in ["a/b report.pdf", ".", "..", "Ünïcødé 表格.pdf"] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        assert!(names.iter().any(|x| x.len() > 255));
        assert_eq!(s.files_named(1002, "consent.pdf").len(), 2);
        assert_eq!(s.files_named(1002, "notes.txt").len(), 2);
        let big = s.files_named(1001, "scan-archive.bin");
        assert_eq!(big[0].data.len(), 3 * 1024 * 1024);
        assert!(s.files_named(1001, "empty.txt")[0].data.is_empty());
        let png = &s.files_named(1001, "insurance-card.png")[0];
        assert_eq!(png.content_type, "image/png");
        assert!(png.data.starts_with(b"\x89PNG"));
        let pdf = &s.files_named(1001, "intake-form.pdf")[0];
        assert!(pdf.data.starts_with(b"%PDF-1.4"));
        assert!(pdf.data.ends_with(b"%%EOF\n"));
    }

    #[test]
    fn bulk_client_has_numbered_files() {
        let s = Store::new();
        add_bulk_client(&s, 9, 3, 10);
        let files = s.files_of(9);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].name, "doc-0001.txt");
        assert!(files.iter().all(|f| f.data.len() == 10));
    }
}
