//! Turning listing bodies from the server into rows, tolerantly and within bounds: the
//! body is decoded lossily (invalid UTF-8 becomes U+FFFD), split into at most
//! `max_rows` rows without parsing them, then each row is parsed on its own. Ids may be
//! strings or numbers, `DateCreated` an integer, a float or an ISO-8601 string, nulls
//! stand for defaults; a row that still cannot be used is skipped and counted, so one
//! odd row never blanks a directory. Ids are validated here, before any is used in a
//! URL path or a name. Nothing here can panic on any input (property-tested).

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Client, ClientId, Folder, RemoteError, RemoteFile};

/// Longest file or folder id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Rows of one listing, and how many were skipped as unusable.
#[derive(Debug, PartialEq)]
pub struct Parsed<T> {
    pub rows: Vec<T>,
    pub skipped: usize,
}

/// Split a JSON array body into its rows' raw text, refusing more than `max_rows`.
fn split_rows<'a>(text: &'a str, what: &str, max_rows: usize) -> Result<Vec<&'a RawValue>, RemoteError> {
    struct Rows<'c> {
        max: usize,
        over: &'c std::cell::Cell<bool>,
    }
    impl<'de> Visitor<'de> for Rows<'_> {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut rows = Vec::new();
            while let Some(r) = seq.next_element::<&'de RawValue>()? {
                if rows.len() >= self.max {
                    self.over.set(true);
                    return Err(serde::de::Error::custom("too many rows"));
                }
                rows.push(r);
            }
            Ok(rows)
        }
    }
    let over = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let rows = de
        .deserialize_seq(Rows {
            max: max_rows,
            over: &over,
        })
        .and_then(|rows| de.end().map(|()| rows));
    match rows {
        Ok(rows) => Ok(rows),
        Err(_) if over.get() => Err(RemoteError::Protocol(format!(
            "{what}: the answer has more than {max_rows} rows; refusing it"
        ))),
        Err(e) => Err(RemoteError::Protocol(format!(
            "{what}: malformed JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))),
    }
}

/// Parse every row of a listing body with `row`, skipping (and counting) rows it
/// cannot use.
fn parse_rows<T>(
    body: &[u8],
    what: &str,
    max_rows: usize,
    row: impl Fn(&Map<String, Value>) -> Option<T>,
) -> Result<Parsed<T>, RemoteError> {
    let text = String::from_utf8_lossy(body);
    let raw = split_rows(&text, what, max_rows)?;
    let mut rows = Vec::with_capacity(raw.len());
    let mut skipped = 0;
    for r in raw {
        match serde_json::from_str::<Map<String, Value>>(r.get())
            .ok()
            .and_then(|m| row(&m))
        {
            Some(t) => rows.push(t),
            None => skipped += 1,
        }
    }
    Ok(Parsed { rows, skipped })
}

/// A field by name, ignoring ASCII case (`Id`, `id`, `ID`); `null` counts as absent.
fn field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let v = m
        .get(name)
        .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))?;
    (!v.is_null()).then_some(v)
}

/// A string field; numbers and booleans are taken as their text.
fn text(m: &Map<String, Value>, name: &str) -> Option<String> {
    match field(m, name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A file or folder id that is safe to put in a URL path and a name: not empty, not
/// `.` or `..`, no `/`, `\` or control characters, at most [`MAX_ID_BYTES`] bytes.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id != "."
        && id != ".."
        && !id.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// An id field: a string or an integer, valid per [`valid_id`].
fn id(m: &Map<String, Value>, name: &str) -> Option<String> {
    let s = match field(m, name)? {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    valid_id(&s).then_some(s)
}

/// A non-negative integer: a JSON integer, an integral float or a decimal string.
fn count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            (f >= 0.0 && f.fract() == 0.0 && f < 1.8e19).then_some(f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `DateCreated` as Unix milliseconds: an integer, a float, a numeric string or an
/// ISO-8601 date-time. Absent or unreadable: 0 (1970), which shows but sorts first.
fn date_ms(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
            .unwrap_or(0),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| iso8601_ms(s.trim()))
            .unwrap_or(0),
        _ => 0,
    }
}

/// `YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|±hh[:]mm]` as Unix milliseconds (no zone: UTC).
pub fn iso8601_ms(s: &str) -> Option<i64> {
    fn num(s: &str) -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 9).then(|| s.parse().ok())?
    }
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) || y > 9999 {
        return None;
    }
    // Split off the zone.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let sign = if rest[i..].starts_with('-') { -1 } else { 1 };
        let z = rest[i + 1..].replace(':', "");
        if z.len() != 4 {
            return None;
        }
        let (hh, mm) = (num(z.get(..2)?)?, num(z.get(2..)?)?);
        (&rest[..i], sign * (hh * 60 + mm))
    } else {
        (rest, 0)
    };
    let (mut h, mut mi, mut sec, mut ms) = (0, 0, 0, 0);
    if !time.is_empty() {
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut t = hms.split(':');
        h = num(t.next()?)?;
        mi = num(t.next()?)?;
        sec = t.next().map(num).unwrap_or(Some(0))?;
        if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        if let Some(f) = frac {
            let digits: String = f.chars().take(3).collect();
            let v = num(&digits)?;
            ms = v * 10i64.pow(3 - digits.len() as u32);
        }
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

fn file_row(m: &Map<String, Value>) -> Option<RemoteFile> {
    let folder_id = match field(m, "FolderId") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(_) => Some(id(m, "FolderId")?),
    };
    Some(RemoteFile {
        id: id(m, "Id")?,
        name: text(m, "FileName").unwrap_or_default(),
        // A file of unknown size cannot be read safely (the length check needs it).
        size: count(field(m, "Size")?)?,
        created_ms: date_ms(field(m, "DateCreated")),
        content_type: text(m, "ContentType").unwrap_or_default(),
        folder_id,
    })
}

fn folder_row(m: &Map<String, Value>) -> Option<Folder> {
    Some(Folder {
        id: id(m, "Id")?,
        name: text(m, "Name").unwrap_or_default(),
    })
}

fn client_row(m: &Map<String, Value>) -> Option<Client> {
    let cid = field(m, "ClientId").or_else(|| field(m, "ClientNumber"))?;
    let id: ClientId = count(cid).filter(|&i| i > 0)?;
    let name = text(m, "Name").filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
        format!(
            "{} {}",
            text(m, "FirstName").unwrap_or_default(),
            text(m, "LastName").unwrap_or_default()
        )
        .trim()
        .to_string()
    });
    Some(Client { id, name })
}

/// `GET files?clientId=` rows.
pub fn files(body: &[u8], max_rows: usize) -> Result<Parsed<RemoteFile>, RemoteError> {
    parse_rows(body, "GET files", max_rows, file_row)
}

/// `GET folders` rows.
pub fn folders(body: &[u8], max_rows: usize) -> Result<Parsed<Folder>, RemoteError> {
    parse_rows(body, "GET folders", max_rows, folder_row)
}

/// `GET clients` rows: `ClientId`, or `ClientNumber` in the short form.
pub fn clients(body: &[u8], max_rows: usize) -> Result<Parsed<Client>, RemoteError> {
    parse_rows(body, "GET clients", max_rows, client_row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn odd_rows_are_tolerated_and_unusable_ones_skipped() {
        let body = br#"[
            {"Id": "a1", "DateCreated": 1618939932507, "Size": 17, "FileName": "a.txt", "ContentType": "text/plain", "FolderId": null},
            {"Id": 42, "DateCreated": 1618939932507.0, "Size": "18", "FileName": 7, "ContentType": null, "FolderId": 9},
            {"id": "c3", "dateCreated": "2021-04-20T17:32:12.507Z", "size": 19.0, "fileName": null},
            {"Id": "d4", "DateCreated": "2021-04-20T19:32:12+02:00", "Size": 1, "FileName": "d"},
            {"Id": "neg", "DateCreated": 1, "Size": -5, "FileName": "negative size"},
            {"Id": "..", "Size": 1, "FileName": "dot dot"},
            {"Id": "a/b", "Size": 1, "FileName": "slash"},
            {"Id": "", "Size": 1, "FileName": "empty id"},
            {"Size": 1, "FileName": "no id"},
            {"Id": "bad-folder", "Size": 1, "FolderId": "../x"},
            "not an object",
            17,
            {"Id": "surrogate", "Size": 1, "FileName": "\ud800"},
            {"Id": "dup", "Id": "dup2", "Size": 1}
        ]"#;
        let p = files(body, 1000).unwrap();
        let ids: Vec<&str> = p.rows.iter().map(|f| f.id.as_str()).collect();
        // A duplicated key: the last one counts (as in serde_json's maps).
        assert_eq!(ids, ["a1", "42", "c3", "d4", "dup2"]);
        assert_eq!(p.skipped, 9);
        assert_eq!(p.rows[1].size, 18);
        assert_eq!(p.rows[1].name, "7");
        assert_eq!(p.rows[1].folder_id.as_deref(), Some("9"));
        assert_eq!(p.rows[1].created_ms, 1618939932507);
        assert_eq!(p.rows[2].created_ms, 1618939932507);
        assert_eq!(p.rows[2].name, "");
        assert_eq!(p.rows[2].size, 19);
        assert_eq!(p.rows[3].created_ms, 1618939932000);
    }

    #[test]
    fn invalid_utf8_in_one_row_does_not_fail_the_listing() {
        let mut body = br#"[{"Id":"a","Size":1,"FileName":"caf"#.to_vec();
        body.push(0xe9);
        body.extend_from_slice(br#".txt","DateCreated":1},{"Id":"b","Size":2,"FileName":"b.txt","DateCreated":2}]"#);
        let p = files(&body, 10).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].name, "caf\u{fffd}.txt");
    }

    #[test]
    fn too_many_rows_and_malformed_bodies_are_clear_errors() {
        let body = format!("[{}]", [r#"{"Id":"x","Size":1}"#; 11].join(","));
        let err = files(body.as_bytes(), 10).unwrap_err();
        assert!(err.to_string().contains("more than 10 rows"), "{err}");
        assert_eq!(files(body.as_bytes(), 11).unwrap().rows.len(), 11);
        for bad in [&b"{}"[..], b"[", b"", b"[1] x", b"null"] {
            assert!(matches!(files(bad, 10), Err(RemoteError::Protocol(_))), "{bad:?}");
        }
    }

    #[test]
    fn clients_take_client_number_when_client_id_is_absent() {
        let body = br#"[{"ClientId": 5, "FirstName": "Ada", "LastName": "L"},
                        {"Name": "Bo", "ClientNumber": 6},
                        {"Name": "Cy", "ClientNumber": "7"},
                        {"Name": "no id"}, {"ClientId": 0}, {"ClientId": -3}]"#;
        let p = clients(body, 100).unwrap();
        assert_eq!(
            p.rows,
            vec![
                Client {
                    id: 5,
                    name: "Ada L".into()
                },
                Client {
                    id: 6,
                    name: "Bo".into()
                },
                Client {
                    id: 7,
                    name: "Cy".into()
                }
            ]
        );
        assert_eq!(p.skipped, 3);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(iso8601_ms("2021-04-20T17:32:12.507Z"), Some(1618939932507));
        assert_eq!(iso8601_ms("2021-04-20T17:32:12.5"), Some(1618939932500));
        assert_eq!(iso8601_ms("2021-04-20"), Some(1618876800000));
        assert_eq!(iso8601_ms("1969-12-31T23:59:59Z"), Some(-1000));
        assert_eq!(iso8601_ms("2021-04-20T19:32:12-0100"), Some(1618950732000));
        for bad in [
            "",
            "2021",
            "2021-13-01",
            "x-y-z",
            "2021-01-01T25:00",
            "2021-01-01T10:00+1",
        ] {
            assert_eq!(iso8601_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_that_could_become_path_segments_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        for good in ["f1", "...", "a.b", "abc-DEF_123", &"x".repeat(128), "Ünï"] {
            assert!(valid_id(good), "{good:?}");
        }
    }

    proptest! {
        #[test]
        fn no_panic_from_any_body(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = files(&body, 50);
            let _ = folders(&body, 50);
            let _ = clients(&body, 50);
        }

        #[test]
        fn no_panic_from_any_row_values(
            id in prop_oneof![any::<String>().prop_map(Value::from), any::<i64>().prop_map(Value::from), any::<f64>().prop_map(Value::from), Just(Value::Null)],
            size in prop_oneof![any::<i64>().prop_map(Value::from), any::<f64>().prop_map(Value::from), any::<String>().prop_map(Value::from), Just(Value::Null)],
            date in prop_oneof![any::<i64>().prop_map(Value::from), any::<u64>().prop_map(Value::from), any::<f64>().prop_map(Value::from), any::<String>().prop_map(Value::from), "[0-9]{1,5}-[0-9]{1,3}-[0-9]{1,3}T[0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3})?(\\.[0-9]{0,5})?([Zz]|[+-][0-9:]{0,6})?".prop_map(Value::from)],
            name in prop_oneof![any::<String>().prop_map(Value::from), Just(Value::Null)],
        ) {
            let row = serde_json::json!([{"Id": id, "Size": size, "DateCreated": date, "FileName": name, "FolderId": id, "ClientId": size}]);
            let body = serde_json::to_vec(&row).unwrap();
            let p = files(&body, 10).unwrap();
            prop_assert_eq!(p.rows.len() + p.skipped, 1);
            for f in &p.rows {
                prop_assert!(valid_id(&f.id));
            }
            let _ = clients(&body, 10).unwrap();
            let _ = folders(&body, 10).unwrap();
        }

        #[test]
        fn no_panic_from_any_date_text(s in ".{0,40}") {
            let _ = iso8601_ms(&s);
        }
    }
}
