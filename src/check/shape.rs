//! Shapes of the service's answers, described without their data: JSON values by type,
//! strings by length and character class, bodies by form, header values by syntax.
//! Nothing here returns text taken from an answer, except JSON object keys and MIME
//! types, and only when they pass a strict pattern (so no name can slip through).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The character class of a string, from the narrowest that fits.
pub fn string_class(s: &str) -> &'static str {
    let b = s.as_bytes();
    if b.is_empty() {
        "empty"
    } else if b.iter().all(u8::is_ascii_digit) {
        "digits"
    } else if is_guid(s) {
        "GUID"
    } else if b.iter().all(u8::is_ascii_hexdigit) {
        "hex"
    } else if b.iter().all(u8::is_ascii_alphanumeric) {
        "letters and digits"
    } else if b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_') {
        "letters, digits, - and _"
    } else if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        "printable ASCII"
    } else if s.is_ascii() {
        "ASCII with control characters"
    } else {
        "non-ASCII"
    }
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `string(12 chars, digits)`.
pub fn describe_string(s: &str) -> String {
    format!("string({} chars, {})", s.chars().count(), string_class(s))
}

/// The JSON type of a value, numbers split into integer and float.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An object key as printed: itself if it looks like a field name, else its shape.
pub fn safe_key(k: &str) -> String {
    let ok = !k.is_empty()
        && k.len() <= 40
        && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !k.as_bytes()[0].is_ascii_digit();
    if ok {
        k.to_string()
    } else {
        format!("<key {}>", describe_string(k))
    }
}

/// One value, one level deep for objects: `{"Id": string(8 chars, hex)}`.
pub fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => describe_string(s),
        Value::Array(a) => {
            let kinds: BTreeSet<&str> = a.iter().map(kind).collect();
            match kinds.len() {
                0 => "empty array".to_string(),
                1 => format!(
                    "array of {} {}{}",
                    a.len(),
                    kinds.iter().next().copied().unwrap_or("value"),
                    if a.len() == 1 { "" } else { "s" }
                ),
                _ => format!(
                    "array of {} values ({})",
                    a.len(),
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                ),
            }
        }
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let inner = match v {
                        Value::Object(_) => "object".to_string(),
                        Value::Array(a) => format!("array of {}", a.len()),
                        other => describe_value(other),
                    };
                    format!("\"{}\": {inner}", safe_key(k))
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        other => kind(other).to_string(),
    }
}

/// A body: `empty`, a JSON shape, or `text (N bytes)` / `binary (N bytes)`.
pub fn describe_body(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty".to_string();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => format!("JSON {}", describe_value(&v)),
        Err(_) if std::str::from_utf8(body).is_ok() => format!("text ({} bytes, not JSON)", body.len()),
        Err(_) => format!("binary ({} bytes)", body.len()),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
}

/// A `Content-Type` value: the MIME type and parameter names if they are plain
/// tokens (`application/pdf; charset`), else the value's shape.
pub fn describe_mime(v: &str) -> String {
    let mut parts = v.split(';').map(str::trim);
    let main = parts.next().unwrap_or("").to_ascii_lowercase();
    let ok = main.split_once('/').is_some_and(|(t, s)| is_token(t) && is_token(s));
    if !ok {
        return format!("unusual value: {}", describe_string(v));
    }
    let params: Vec<String> = parts
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let value = value.trim_matches('"');
            if is_token(name) && is_token(value) && value.len() <= 20 {
                format!("{}={}", name.to_ascii_lowercase(), value.to_ascii_lowercase())
            } else {
                format!("{}=…", safe_key(name))
            }
        })
        .collect();
    if params.is_empty() {
        main
    } else {
        format!("{main}; {}", params.join("; "))
    }
}

/// A `Retry-After` value: seconds, an HTTP date, or something else.
pub fn describe_retry_after(v: Option<&str>) -> String {
    match v.map(str::trim) {
        None => "absent".to_string(),
        Some(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => format!("{s} seconds"),
        Some(s) if s.contains("GMT") => "an HTTP date".to_string(),
        Some(s) => format!("unusual value: {}", describe_string(s)),
    }
}

/// The form of a `Content-Disposition` value, and the file name it carries, decoded,
/// for comparison by the caller (never printed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disposition {
    /// `attachment`, `inline`, or `other`.
    pub kind: String,
    /// Whether a plain `filename=` parameter is present.
    pub has_filename: bool,
    /// Whether that parameter is quoted.
    pub quoted: bool,
    /// Whether an RFC 5987 `filename*=` parameter is present.
    pub has_filename_star: bool,
    /// The name the header gives: `filename*` decoded if present, else `filename`.
    pub name: Option<String>,
}

impl Disposition {
    /// `attachment; filename="…"; filename*=UTF-8''…`, without the names.
    pub fn describe(&self) -> String {
        let mut out = self.kind.clone();
        if self.has_filename {
            out.push_str(if self.quoted {
                "; filename=\"…\""
            } else {
                "; filename=… (unquoted)"
            });
        }
        if self.has_filename_star {
            out.push_str("; filename*=UTF-8''…");
        }
        out
    }
}

/// Parse a `Content-Disposition` value loosely (enough to describe and compare it).
pub fn parse_disposition(v: &str) -> Disposition {
    let mut d = Disposition::default();
    let mut rest = v.trim();
    let kind_end = rest.find(';').unwrap_or(rest.len());
    let kind = rest[..kind_end].trim().to_ascii_lowercase();
    d.kind = match kind.as_str() {
        "attachment" | "inline" => kind,
        _ => "other".to_string(),
    };
    rest = &rest[kind_end..];
    let mut plain = None;
    let mut star = None;
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let Some(eq) = r.find('=') else { break };
        let name = r[..eq].trim().to_ascii_lowercase();
        let after = &r[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            // A quoted string with backslash escapes.
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (Some((out, true)), &q[end.min(q.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (Some((after[..end].trim().to_string(), false)), &after[end..])
        };
        match name.as_str() {
            "filename" => plain = value,
            "filename*" => star = value.map(|(v, _)| v),
            _ => {}
        }
        rest = next.trim_start();
        if !rest.starts_with(';') {
            break;
        }
    }
    if let Some((v, quoted)) = plain {
        d.has_filename = true;
        d.quoted = quoted;
        d.name = Some(v);
    }
    if let Some(v) = star {
        d.has_filename_star = true;
        // charset'lang'percent-encoded
        let mut it = v.splitn(3, '\'');
        let (charset, _lang, enc) = (it.next(), it.next(), it.next());
        if let (Some(cs), Some(enc)) = (charset, enc) {
            if cs.eq_ignore_ascii_case("utf-8") {
                if let Ok(s) = percent_encoding::percent_decode_str(enc).decode_utf8() {
                    d.name = Some(s.into_owned());
                }
            }
        }
    }
    d
}

/// What one field looked like across the rows of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldShape {
    /// Rows where the field is absent.
    pub missing: usize,
    /// JSON type → number of rows.
    pub kinds: BTreeMap<&'static str, usize>,
    /// Shortest and longest string value, in characters.
    pub str_len: Option<(usize, usize)>,
    /// Character classes of the string values.
    pub str_classes: BTreeSet<&'static str>,
}

impl FieldShape {
    /// `string ×3 (8–9 chars; hex)`, `integer ×2, null ×1`, `missing in 2 rows`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, n) in &self.kinds {
            let mut p = format!("{k} ×{n}");
            if *k == "string" {
                if let Some((lo, hi)) = self.str_len {
                    let len = if lo == hi {
                        format!("{lo} chars")
                    } else {
                        format!("{lo}–{hi} chars")
                    };
                    let classes: Vec<&str> = self.str_classes.iter().copied().collect();
                    p.push_str(&format!(" ({len}; {})", classes.join(", ")));
                }
            }
            parts.push(p);
        }
        if self.missing > 0 {
            parts.push(format!("missing in {} row(s)", self.missing));
        }
        parts.join(", ")
    }

    /// Rows that have the field with a type other than the ones listed.
    pub fn count_other_than(&self, allowed: &[&str]) -> usize {
        self.kinds
            .iter()
            .filter(|(k, _)| !allowed.contains(k))
            .map(|(_, n)| n)
            .sum()
    }

    /// Rows where the field has this type.
    pub fn count(&self, kind: &str) -> usize {
        self.kinds.get(kind).copied().unwrap_or(0)
    }
}

/// The shapes of a listing's rows: each expected field, the fields nobody expected,
/// and how many rows were not objects at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowsShape {
    /// Number of rows.
    pub rows: usize,
    /// Rows that are not JSON objects.
    pub non_objects: usize,
    /// Expected field name → its shape.
    pub fields: BTreeMap<String, FieldShape>,
    /// Other field names seen (printable ones as they are; see [`safe_key`]).
    pub extra: BTreeSet<String>,
}

impl RowsShape {
    /// Summarise `rows` for the `expected` fields.
    pub fn of(rows: &[Value], expected: &[&str]) -> RowsShape {
        let mut out = RowsShape {
            rows: rows.len(),
            ..RowsShape::default()
        };
        for f in expected {
            out.fields.insert((*f).to_string(), FieldShape::default());
        }
        for row in rows {
            let Value::Object(m) = row else {
                out.non_objects += 1;
                continue;
            };
            for f in expected {
                let shape = out.fields.entry((*f).to_string()).or_default();
                match m.get(*f) {
                    None => shape.missing += 1,
                    Some(v) => {
                        *shape.kinds.entry(kind(v)).or_insert(0) += 1;
                        if let Value::String(s) = v {
                            let n = s.chars().count();
                            shape.str_len = Some(match shape.str_len {
                                None => (n, n),
                                Some((lo, hi)) => (lo.min(n), hi.max(n)),
                            });
                            shape.str_classes.insert(string_class(s));
                        }
                    }
                }
            }
            for k in m.keys() {
                if !expected.contains(&k.as_str()) {
                    out.extra.insert(safe_key(k));
                }
            }
        }
        out
    }

    /// The shape of one expected field (an empty one if it was not asked for).
    pub fn field(&self, name: &str) -> FieldShape {
        self.fields.get(name).cloned().unwrap_or_default()
    }

    /// One line per expected field, then the extra field names.
    pub fn describe_lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields
            .iter()
            .map(|(name, shape)| format!("{name}: {}", shape.describe()))
            .collect();
        if self.non_objects > 0 {
            out.push(format!("{} row(s) are not objects", self.non_objects));
        }
        if !self.extra.is_empty() {
            out.push(format!(
                "other fields: {}",
                self.extra.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        out
    }
}

/// A name shown escaped so that a pasted report is unambiguous: ASCII as is (quotes
/// and backslashes escaped), everything else as `\u{..}`. Only for names this tool
/// chose itself (the marker file), never for the account's names.
pub fn escape_exact(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_described_by_length_and_class_only() {
        assert_eq!(describe_string("12345"), "string(5 chars, digits)");
        assert_eq!(
            describe_string("0f8fad5b-d9cb-469f-a165-70867728950e"),
            "string(36 chars, GUID)"
        );
        assert_eq!(describe_string("Jane Doe"), "string(8 chars, printable ASCII)");
        assert_eq!(describe_string("日本"), "string(2 chars, non-ASCII)");
        assert_eq!(describe_string(""), "string(0 chars, empty)");
    }

    #[test]
    fn values_and_bodies_show_types_and_field_names_not_data() {
        let v = json!({"Message": "Client Jane Doe not found", "Jane Doe.pdf": 1});
        let d = describe_value(&v);
        assert_eq!(
            d,
            "{\"<key string(12 chars, printable ASCII)>\": integer, \"Message\": string(25 chars, printable ASCII)}"
        );
        assert_eq!(describe_body(b""), "empty");
        assert_eq!(describe_body(b"[]"), "JSON empty array");
        assert_eq!(describe_body(b"[{\"a\":1},{\"a\":2}]"), "JSON array of 2 objects");
        assert_eq!(describe_body(b"Unauthorized"), "text (12 bytes, not JSON)");
        assert_eq!(describe_body(&[0xff, 0x00]), "binary (2 bytes)");
    }

    #[test]
    fn mime_and_retry_after_forms() {
        assert_eq!(
            describe_mime("application/json; charset=utf-8"),
            "application/json; charset=utf-8"
        );
        assert_eq!(describe_mime("Application/PDF"), "application/pdf");
        assert_eq!(
            describe_mime("Jane Doe"),
            "unusual value: string(8 chars, printable ASCII)"
        );
        assert_eq!(describe_retry_after(None), "absent");
        assert_eq!(describe_retry_after(Some("30")), "30 seconds");
        assert_eq!(
            describe_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            "an HTTP date"
        );
    }

    #[test]
    fn disposition_is_parsed_and_described_without_the_name() {
        let d =
            parse_disposition("attachment; filename=\"a \\\"b\\\".pdf\"; filename*=UTF-8''a%20%22b%22%20%C3%A9.pdf");
        assert_eq!(d.kind, "attachment");
        assert!(d.has_filename && d.quoted && d.has_filename_star);
        assert_eq!(d.name.as_deref(), Some("a \"b\" é.pdf"));
        assert_eq!(d.describe(), "attachment; filename=\"…\"; filename*=UTF-8''…");
        let d = parse_disposition("inline; filename=x.pdf");
        assert_eq!(
            (d.kind.as_str(), d.quoted, d.name.as_deref()),
            ("inline", false, Some("x.pdf"))
        );
        assert_eq!(d.describe(), "inline; filename=… (unquoted)");
    }

    #[test]
    fn rows_are_summarised_per_field() {
        let rows = vec![
            json!({"Id": "x1", "Size": 3, "Secret": "x"}),
            json!({"Id": 7, "Size": 2.5}),
            json!("not an object"),
        ];
        let s = RowsShape::of(&rows, &["Id", "Size", "FileName"]);
        assert_eq!(s.rows, 3);
        assert_eq!(s.non_objects, 1);
        assert_eq!(
            s.field("Id").describe(),
            "integer ×1, string ×1 (2 chars; letters and digits)"
        );
        assert_eq!(s.field("Size").count_other_than(&["integer"]), 1);
        assert_eq!(s.field("FileName").missing, 2);
        assert_eq!(s.extra.iter().collect::<Vec<_>>(), vec!["Secret"]);
    }

    #[test]
    fn exact_escape_shows_every_non_ascii_char() {
        assert_eq!(escape_exact("a \"q\" é.txt"), "a \\\"q\\\" \\u{e9}.txt");
    }
}
