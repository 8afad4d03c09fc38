//! The read-only probe: `GET folders`, the first page of clients, one client's files,
//! one download (the smallest non-empty file, counted and discarded), a client id that
//! does not exist, and a made-up key; each answer judged against the contract.

use std::collections::BTreeSet;

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::probe::{client_id, file_path, id_text, Answer, Halt, Keep, KeyUse, Prober};
use super::report::Severity;
use super::shape::{self, describe_body, describe_mime, describe_string, RowsShape};
use super::write::Transfer;
use super::{CheckOptions, UNKNOWN_CLIENT};
use crate::remote::ClientId;

impl Prober<'_> {
    /// The whole sequence: the six read-only calls, then the round trip if asked. Stops
    /// at the first answer that ends the check (the reason is in the report).
    pub(super) async fn probe(&mut self, opts: &CheckOptions) -> Result<(), Halt> {
        self.folders().await?;
        let first = self.clients().await?;
        let client = opts.client.or(first);
        let rows = match client {
            Some(c) => self.files(c, opts.client.is_some()).await?,
            None => None,
        };
        if let Some(rows) = &rows {
            self.download_smallest(rows).await?;
        }
        self.unknown_client().await?;
        self.bad_key().await?;
        if opts.write {
            match (opts.client, &rows) {
                (Some(c), Some(rows)) => {
                    let ids_before: BTreeSet<String> = rows.iter().filter_map(|r| id_text(r.get("Id"))).collect();
                    let left = self.round_trip(c, &ids_before, Transfer::Sized).await?;
                    if opts.chunked {
                        if let Some(id) = left {
                            // Its delete did not take: no second file to leave behind.
                            return Err(self.stop(format!(
                                "the round trip without Content-Length did not run: the first marker (id {id}) is \
                                 still listed"
                            )));
                        }
                        self.round_trip(c, &ids_before, Transfer::Unsized).await?;
                    }
                }
                _ => {
                    return Err(self.stop(
                        "the upload round trip did not run: the client's listing before it could not be read".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn folders(&mut self) -> Result<(), Halt> {
        let req = "GET folders".to_string();
        let Some((idx, a)) = self
            .get(
                req.clone(),
                "the account's folders",
                "folders",
                None,
                KeyUse::Real,
                Keep::Body,
            )
            .await?
        else {
            return Ok(());
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "folders-unreadable",
                Severity::Unsafe,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the mount lists folders to start and to place files: it would refuse to mount",
            );
            return Ok(());
        };
        let shape = RowsShape::of(&rows, &["Id", "Name"]);
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        let id = shape.field("Id");
        if id.count("integer") > 0 && id.count_other_than(&["string", "integer"]) == 0 && id.missing == 0 {
            self.find(
                "folder-id-number",
                Severity::Handled,
                &req,
                format!("folder Id: {}", id.describe()),
                "folder ids come as numbers: the mount must read them as text (row-by-row tolerant parsing)",
            );
        } else if id.count_other_than(&["string"]) > 0 || id.missing > 0 || shape.non_objects > 0 {
            self.find(
                "folder-id-unreadable",
                Severity::Degraded,
                &req,
                format!("folder Id: {}", id.describe()),
                "folders without a readable Id cannot be shown: their files appear nowhere or at the top level",
            );
        }
        let name = shape.field("Name");
        if name.count_other_than(&["string"]) > 0 || name.missing > 0 {
            self.find(
                "folder-name-unreadable",
                Severity::Degraded,
                &req,
                format!("folder Name: {}", name.describe()),
                "folders without a Name string cannot be shown under their name",
            );
        }
        self.folder_ids = Some(
            rows.iter()
                .filter_map(|r| id_text(r.get("Id")))
                .collect::<BTreeSet<String>>(),
        );
        Ok(())
    }

    /// `GET clients` page 1 with the profile: the first client's id, if any.
    async fn clients(&mut self) -> Result<Option<ClientId>, Halt> {
        let req = "GET clients?includeProfile=true&page=1".to_string();
        let Some((idx, a)) = self
            .get(
                req.clone(),
                "the first page of clients",
                "clients",
                Some("includeProfile=true&page=1"),
                KeyUse::Real,
                Keep::Body,
            )
            .await?
        else {
            return Ok(None);
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "clients-unreadable",
                Severity::Degraded,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "`ls clients/` fails, and clients without files cannot be opened; paths of clients \
                 with files still work",
            );
            return Ok(None);
        };
        let shape = RowsShape::of(&rows, &["ClientId", "ClientNumber", "Name", "FirstName", "LastName"]);
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        let cid = shape.field("ClientId");
        let num = shape.field("ClientNumber");
        if rows.is_empty() {
            self.observe(idx, "no clients on the first page".into());
        } else if cid.count("integer") == rows.len() {
            // As the contract says.
        } else if cid.missing == rows.len() && num.count("integer") + num.count("string") == rows.len() {
            self.find(
                "client-rows-short-form",
                Severity::Degraded,
                &req,
                format!(
                    "rows carry ClientNumber ({}) and no ClientId, although includeProfile=true was sent",
                    num.describe()
                ),
                "the service ignores includeProfile=true: the mount must take the id from ClientNumber, \
                 else `ls clients/` fails and clients without files cannot be opened",
            );
        } else if cid.count_other_than(&["integer", "string"]) == 0 && cid.missing == 0 {
            self.find(
                "client-id-string",
                Severity::Handled,
                &req,
                format!("ClientId: {}", cid.describe()),
                "client ids come as strings: the mount must parse them as numbers (tolerant parsing)",
            );
        } else {
            self.find(
                "client-id-unreadable",
                Severity::Degraded,
                &req,
                format!("ClientId: {}; ClientNumber: {}", cid.describe(), num.describe()),
                "some clients have no readable id: they are missing from `ls clients/`",
            );
        }
        Ok(rows
            .iter()
            .find_map(|r| client_id(r.get("ClientId")).or_else(|| client_id(r.get("ClientNumber")))))
    }

    /// `GET files?clientId=c`: the rows, judged against the contract.
    async fn files(&mut self, c: ClientId, named: bool) -> Result<Option<Vec<Value>>, Halt> {
        let req = format!("GET files?clientId={c}");
        let purpose = if named {
            "the files of the client named with --client"
        } else {
            "the files of the first client listed"
        };
        let Some((idx, a)) = self
            .get(
                req.clone(),
                purpose,
                "files",
                Some(&format!("clientId={c}")),
                KeyUse::Real,
                Keep::Body,
            )
            .await?
        else {
            return Ok(None);
        };
        if a.status == 404 && named {
            self.observe(idx, a.describe());
            return Err(self.stop(format!(
                "client {c} was not found (404): check the id given with --client"
            )));
        }
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            self.find(
                "files-unreadable",
                Severity::Unsafe,
                &req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the mount cannot list a client's files, nor confirm its uploads",
            );
            return Ok(None);
        };
        self.judge_file_rows(idx, &req, &rows);
        if rows.is_empty() {
            self.observe(
                idx,
                "the client has no files: the download is not probed (name a client with files with --client)".into(),
            );
        }
        Ok(Some(rows))
    }

    /// `GET files/<id>` of the smallest listed file that is not empty (an empty body
    /// proves little about `Size`): bytes counted, never kept.
    async fn download_smallest(&mut self, rows: &[Value]) -> Result<(), Halt> {
        let smallest = rows
            .iter()
            .filter_map(|r| Some((id_text(r.get("Id"))?, r.get("Size")?.as_u64()?, r)))
            .min_by_key(|(_, size, _)| (*size == 0, *size));
        let Some((id, size, row)) = smallest else {
            return Ok(());
        };
        let listed_ct = row.get("ContentType").and_then(Value::as_str).map(str::to_string);
        let listed_name = row.get("FileName").and_then(Value::as_str).map(str::to_string);
        let req = "GET files/<id of the smallest file>".to_string();
        let Some((idx, a)) = self
            .get(
                req.clone(),
                "one download: the smallest file's bytes are counted and discarded",
                &file_path(&id),
                None,
                KeyUse::Real,
                Keep::CountOnly,
            )
            .await?
        else {
            return Ok(());
        };
        self.observe(idx, format!("file id: {}", describe_string(&id)));
        if !a.is_success() {
            self.observe(idx, a.describe());
            self.find(
                "download-failed",
                Severity::Unsafe,
                &req,
                format!(
                    "a file just listed answered {} with {}",
                    a.status,
                    describe_body(&a.body)
                ),
                "listed files cannot be read",
            );
            return Ok(());
        }
        self.describe_download(idx, &a, listed_ct.as_deref(), listed_name.as_deref());
        self.observe(idx, format!("received {} bytes; listed Size {size}", a.received));
        if a.received != size {
            self.find(
                "size-mismatch",
                Severity::Unsafe,
                &req,
                format!("the body has {} bytes, the listing's Size says {size}", a.received),
                "the mount checks every download against Size: such files fail to read (EIO) and show the \
                 wrong size",
            );
        }
        Ok(())
    }

    /// Observations on a download's headers.
    pub(super) fn describe_download(
        &mut self,
        idx: usize,
        a: &Answer,
        listed_ct: Option<&str>,
        listed_name: Option<&str>,
    ) {
        let ct = match a.header(CONTENT_TYPE) {
            Some(v) => {
                let same = listed_ct.is_some_and(|l| l.eq_ignore_ascii_case(v.split(';').next().unwrap_or("").trim()));
                format!(
                    "Content-Type: {} ({} the listed ContentType)",
                    describe_mime(v),
                    if same { "same as" } else { "differs from" }
                )
            }
            None => "Content-Type: absent".to_string(),
        };
        self.observe(idx, ct);
        let cd = match a.header(CONTENT_DISPOSITION) {
            Some(v) => {
                let d = shape::parse_disposition(v);
                let same = match (&d.name, listed_name) {
                    (Some(n), Some(l)) => {
                        if n == l {
                            "equals the listed FileName byte for byte"
                        } else {
                            "differs from the listed FileName"
                        }
                    }
                    _ => "carries no name",
                };
                format!("Content-Disposition: {}; its name {same}", d.describe())
            }
            None => "Content-Disposition: absent".to_string(),
        };
        self.observe(idx, cd);
        let cl = match a.header(CONTENT_LENGTH).map(|v| v.trim().parse::<u64>()) {
            Some(Ok(n)) if n == a.received => "Content-Length: equals the bytes received",
            Some(Ok(_)) => "Content-Length: differs from the bytes received",
            Some(Err(_)) => "Content-Length: not a number",
            None => "Content-Length: absent (chunked)",
        };
        self.observe(idx, cl.to_string());
        let ranges = a
            .headers
            .get("accept-ranges")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                if v.trim().eq_ignore_ascii_case("bytes") {
                    "bytes"
                } else {
                    "other"
                }
            })
            .unwrap_or("absent");
        self.observe(idx, format!("Accept-Ranges: {ranges}"));
    }

    /// `GET files?clientId=<an id no account has>`: `[]` or 404?
    async fn unknown_client(&mut self) -> Result<(), Halt> {
        let req = format!("GET files?clientId={UNKNOWN_CLIENT}");
        let Some((idx, a)) = self
            .get(
                req.clone(),
                "a client id that does not exist",
                "files",
                Some(&format!("clientId={UNKNOWN_CLIENT}")),
                KeyUse::Real,
                Keep::Body,
            )
            .await?
        else {
            return Ok(());
        };
        self.observe(idx, a.describe());
        match a.status {
            200 => {
                if !matches!(serde_json::from_slice::<Value>(&a.body), Ok(Value::Array(ref v)) if v.is_empty()) {
                    self.observe(idx, "(this id has files in the account; nothing to conclude)".into());
                }
            }
            404 => self.find(
                "unknown-client-404",
                Severity::Handled,
                &req,
                format!("answered 404 with {}, not []", describe_body(&a.body)),
                "unknown client answers 404 not []: the mount takes 404 as \"no such client\" and can skip \
                 the client search it makes after an empty listing",
            ),
            s => self.find(
                "unknown-client-status",
                Severity::Degraded,
                &req,
                format!("answered {s} with {}", describe_body(&a.body)),
                "opening a client id that does not exist fails with an I/O error instead of \"no such file\"",
            ),
        }
        Ok(())
    }

    /// `GET folders` with a made-up key: the rejected-key answer's shape.
    async fn bad_key(&mut self) -> Result<(), Halt> {
        let req = "GET folders (made-up key)".to_string();
        let Some((idx, a)) = self
            .get(
                req.clone(),
                "what a rejected key looks like",
                "folders",
                None,
                KeyUse::Bad,
                Keep::Body,
            )
            .await?
        else {
            return Ok(());
        };
        self.observe(idx, a.describe());
        let body = serde_json::from_slice::<Value>(&a.body).ok();
        let has_message = body
            .as_ref()
            .and_then(|b| b.get("Message"))
            .is_some_and(Value::is_string);
        match a.status {
            401 if has_message => {}
            401 if a.body.is_empty() => self.find(
                "unauthorized-empty-body",
                Severity::Handled,
                &req,
                format!("401 with an empty body ({})", a.describe()),
                "a rejected key answers 401 with an empty body: the mount reports it from the status alone \
                 (no service message to show)",
            ),
            401 => self.find(
                "unauthorized-body-other",
                Severity::Handled,
                &req,
                format!("401 with {}", describe_body(&a.body)),
                "a rejected key's answer has no {\"Message\"}: the mount reports it from the status alone",
            ),
            403 => self.find(
                "unauthorized-403",
                Severity::Handled,
                &req,
                format!("403 with {}", describe_body(&a.body)),
                "a rejected key answers 403, not 401: the mount treats both as a rejected key",
            ),
            s if (200..300).contains(&s) => self.find(
                "bad-key-accepted",
                Severity::Unsafe,
                &req,
                format!("a made-up key was answered {s}"),
                "the service did not check the key: the answers above may not be this account's",
            ),
            s => self.find(
                "bad-key-status",
                Severity::Degraded,
                &req,
                format!("a made-up key was answered {s} with {}", describe_body(&a.body)),
                "a rejected key is not recognised as such: mounting with a wrong key fails with a vague error",
            ),
        }
        Ok(())
    }
}
