//! Metadata as extended attributes (`getfattr -d`): what the core already knows about a
//! file or directory from its listing, named `user.intakeq.*`. Served from memory only:
//! reading them never costs an API call.

use super::error::{CoreError, CoreResult};
use super::state::{Key, State};
use super::{Core, Ino};
use crate::remote::{ClientId, Remote};

/// The namespace every attribute name starts with.
pub const XATTR_PREFIX: &str = "user.intakeq.";

impl<R: Remote> Core<R> {
    /// The extended attributes of `ino`, as (name, value) pairs in a stable order. A
    /// file not listed yet (created through the mount, upload pending) shows its client
    /// only.
    pub fn xattrs(&self, ino: Ino) -> CoreResult<Vec<(String, Vec<u8>)>> {
        let client = self.client_of(ino);
        let st = self.st();
        let node = st.nodes.get(&ino).ok_or(CoreError::NotFound)?;
        let mut out: Vec<(&str, String)> = Vec::new();
        match &node.key {
            Key::Root | Key::Clients | Key::ByName => {}
            Key::Client(c) | Key::NameLink(c) => {
                out.push(("client_id", c.to_string()));
                // The client's name, from the client list (kept for /by-name): no call.
                let name = st
                    .client_list
                    .as_ref()
                    .and_then(|(list, _)| list.iter().find(|r| r.id == *c).map(|r| r.name.clone()));
                if let Some(name) = name {
                    out.push(("client_name", name));
                }
            }
            Key::Folder(c, f) => {
                out.push(("client_id", c.to_string()));
                out.push(("folder_id", f.clone()));
                if let Some(name) = folder_name(&st, f) {
                    out.push(("folder", name));
                }
            }
            Key::File(id) => {
                let row = client.and_then(|c| listed(&st, c, id));
                out.push(("id", id.clone()));
                if let Some(c) = client {
                    out.push(("client_id", c.to_string()));
                }
                if let Some(f) = row {
                    out.push(("content_type", f.content_type.clone()));
                    out.push(("date_created", iso8601_utc(f.created_ms)));
                    out.push(("size", f.size.to_string()));
                    if let Some(folder) = &f.folder_id {
                        out.push(("folder_id", folder.clone()));
                        if let Some(name) = folder_name(&st, folder) {
                            out.push(("folder", name));
                        }
                    }
                }
            }
            Key::Local(_) => {
                if let Some(c) = client {
                    out.push(("client_id", c.to_string()));
                }
                out.push(("state", "not uploaded yet".to_string()));
            }
        }
        Ok(out
            .into_iter()
            .map(|(k, v)| (format!("{XATTR_PREFIX}{k}"), v.into_bytes()))
            .collect())
    }
}

/// The listed row of file `id` in client `c`'s listing.
fn listed<'a>(st: &'a State, c: ClientId, id: &str) -> Option<&'a crate::remote::RemoteFile> {
    st.clients.get(&c)?.listing.as_ref()?.files.iter().find(|f| f.id == id)
}

/// The account-wide folder's name, if the folders are known.
fn folder_name(st: &State, id: &str) -> Option<String> {
    let (folders, _) = st.folders.as_ref()?;
    folders.iter().find(|f| f.id == id).map(|f| f.name.clone())
}

/// `DateCreated` (Unix milliseconds) as ISO 8601 in UTC, e.g. `2024-03-01T09:30:00.250Z`.
pub fn iso8601_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso8601_utc;

    #[test]
    fn dates_are_iso8601_utc() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_utc(1_709_285_400_250), "2024-03-01T09:30:00.250Z");
        assert_eq!(iso8601_utc(-1), "1969-12-31T23:59:59.999Z");
    }
}
