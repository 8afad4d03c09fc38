//! The write round trip (`--write --client ID`): upload a marker file, list to find
//! the one id that was not there before, download and compare, delete that id and
//! nothing else, list again; what the service stored and answered at each step. With
//! `--chunked`, a second round trip whose upload has no `Content-Length` (chunked on
//! HTTP/1.1): whether the service would accept an upload streamed while it is written.

use std::collections::BTreeSet;

use serde_json::Value;

use super::probe::{file_path, id_text, Answer, Fail, Halt, Keep, KeyUse, Prober};
use super::report::Severity;
use super::shape::{self, describe_body, describe_mime, describe_string, escape_exact};
use super::{MARKER_BYTES, MARKER_CONTENT_TYPE, MARKER_NAME, MARKER_NAME_CHUNKED};
use crate::remote::ClientId;

/// How a round trip's upload sends its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transfer {
    /// With its length, as the mount sends every upload.
    Sized,
    /// Without a length (chunked on HTTP/1.1), as an upload streamed while a file is
    /// still being written would have to be; the mount never sends one.
    Unsized,
}

impl Transfer {
    /// The marker's name in this round trip.
    fn marker(self) -> &'static str {
        match self {
            Transfer::Sized => MARKER_NAME,
            Transfer::Unsized => MARKER_NAME_CHUNKED,
        }
    }
}

/// What the upload's answer told.
struct Upload {
    /// The upload's request line, for findings about it.
    req: String,
    /// The service answered with success.
    accepted: bool,
    /// The answer was lost or a server error: the file may have been stored anyway.
    lost: bool,
    /// The id the answer carried, if it carried one.
    answered_id: Option<String>,
}

/// The marker file as the listing after the upload shows it.
struct Stored {
    /// Its id: the only one the check may delete.
    id: String,
    /// Its listed `FileName`, if a string.
    name: Option<String>,
    /// Its listed `ContentType`, if a string.
    content_type: Option<String>,
}

/// A client's listing that was read.
struct Listing {
    /// The step's index in the report.
    idx: usize,
    /// The request line, for findings about it.
    req: String,
    /// The listed rows.
    rows: Vec<Value>,
}

/// Whether a name the service shows is still recognisably the marker (a name the check
/// chose, so it may be shown exactly and its file deleted).
fn recognisably_marker(name: &str) -> bool {
    name.contains("intakeq-fs")
}

/// A row's `FileName`, if a string.
fn name_of(r: &Value) -> Option<String> {
    r.get("FileName").and_then(Value::as_str).map(str::to_string)
}

/// Which of the rows not listed before is the marker `marker`: the id the upload
/// answered, else the one row with the marker's exact name, else the only new row if its
/// name is still recognisably the marker.
fn pick_own<'r>(new: &[&'r Value], answered_id: Option<&String>, marker: &str) -> Option<&'r Value> {
    if let Some(aid) = answered_id {
        if let Some(r) = new.iter().copied().find(|r| id_text(r.get("Id")).as_ref() == Some(aid)) {
            return Some(r);
        }
    }
    let exact: Vec<&Value> = new
        .iter()
        .copied()
        .filter(|r| name_of(r).as_deref() == Some(marker))
        .collect();
    if exact.len() == 1 {
        return exact.first().copied();
    }
    // A name changed by the service: only if it is the one new file and still
    // recognisably the marker.
    match new {
        [one] if name_of(one).is_some_and(|n| recognisably_marker(&n)) => Some(*one),
        _ => None,
    }
}

impl Prober<'_> {
    /// Upload a marker, list, download, compare, delete, list: only in client `c`, and
    /// only the file whose id is not in `ids_before`. Returns the id of the marker this
    /// round trip stored if it is still listed after its delete (then no second round
    /// trip runs).
    pub(super) async fn round_trip(
        &mut self,
        c: ClientId,
        ids_before: &BTreeSet<String>,
        t: Transfer,
    ) -> Result<Option<String>, Halt> {
        let upload = self.upload_marker(c, t).await?;
        let Some(own) = self.list_after_upload(c, ids_before, &upload, t).await? else {
            return Ok(None);
        };
        let bytes_match = self.download_compare(&own, t).await?;
        // Delete our file, and only it: a new id that is recognisably the marker by
        // name or by content.
        if !(bytes_match || own.name.as_deref().is_some_and(recognisably_marker)) {
            return Err(self.stop(format!(
                "the new file {} has neither the marker's name nor its bytes: the check deleted nothing",
                own.id
            )));
        }
        self.delete_marker(&own.id).await?;
        let still_listed = self.list_after_delete(c, ids_before, &own.id).await?;
        Ok(still_listed.then_some(own.id))
    }

    /// `POST files/c` of the marker, and what its answer says.
    async fn upload_marker(&mut self, c: ClientId, t: Transfer) -> Result<Upload, Halt> {
        let marker = escape_exact(t.marker());
        let req = format!("POST files/{c}");
        let (part, how) = match t {
            Transfer::Sized => (
                reqwest::multipart::Part::bytes(MARKER_BYTES),
                "multipart part `file`, as the mount sends it",
            ),
            Transfer::Unsized => {
                // A stream of unknown length: no Content-Length for the part, so none
                // for the request, whose body goes chunked (HTTP/1.1) or as bare frames (h2).
                let body = futures_util::stream::once(async { Ok::<_, std::io::Error>(MARKER_BYTES) });
                (
                    reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body)),
                    "multipart part `file` without Content-Length (chunked), as a streamed upload would be",
                )
            }
        };
        let part = part
            .file_name(t.marker())
            .mime_str(MARKER_CONTENT_TYPE)
            .map_err(|_| Halt)?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let url = self.url(&format!("files/{c}"), None)?;
        let rb = self.http.post(url).multipart(form);
        self.report.leftover = Some(format!(
            "the check may have left its marker file \"{marker}\" in client {c}: delete it in IntakeQ"
        ));
        let (idx, r) = self
            .call(
                req.clone(),
                &format!("upload the marker file ({how})"),
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        // A lost answer or a server error may hide a stored file: the listing after
        // the upload finds it, so the check can report it and clean up.
        let mut upload = Upload {
            req,
            accepted: false,
            lost: false,
            answered_id: None,
        };
        let answer = match r {
            Ok(a) => Some(a),
            Err(Fail::Skip) => None,
            Err(Fail::Lost) => {
                upload.lost = true;
                None
            }
            Err(Fail::Halt) => return Err(Halt),
        };
        self.observe(
            idx,
            format!(
                "sent: name \"{marker}\" ({} bytes of UTF-8), {} bytes, {MARKER_CONTENT_TYPE}{}",
                t.marker().len(),
                MARKER_BYTES.len(),
                match t {
                    Transfer::Sized => "",
                    Transfer::Unsized => ", no Content-Length",
                }
            ),
        );
        if let Some(a) = &answer {
            self.judge_upload_answer(idx, a, &mut upload, t);
        }
        Ok(upload)
    }

    /// What the upload's answer says: accepted? an id? Findings when it was refused or
    /// has a body other than the contract's empty one.
    fn judge_upload_answer(&mut self, idx: usize, a: &Answer, upload: &mut Upload, t: Transfer) {
        self.observe(idx, a.describe());
        upload.accepted = a.is_success();
        let body = serde_json::from_slice::<Value>(&a.body).ok();
        upload.answered_id = body.as_ref().and_then(|b| id_text(b.get("Id")));
        let only_id =
            upload.answered_id.is_some() && body.as_ref().and_then(Value::as_object).is_some_and(|o| o.len() == 1);
        if !upload.accepted && t == Transfer::Unsized {
            self.find(
                "upload-chunked-refused",
                Severity::Handled,
                &upload.req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the service refuses uploads without Content-Length: the mount never sends one (it stages each \
                 file whole and uploads it at close()), and uploads streamed while a file is written cannot work",
            );
        } else if !upload.accepted {
            self.find(
                "upload-rejected",
                Severity::Degraded,
                &upload.req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the service refused a name with quotes and non-ASCII letters: the mount's uploads of \
                 such names fail at close() (the data stays in the spool, nothing is lost)",
            );
        } else if a.body.is_empty() {
            // As the contract says.
        } else if only_id {
            self.find(
                "upload-answer-id",
                Severity::Handled,
                &upload.req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "uploads answer {Id}: confirmation listings can be skipped",
            );
        } else {
            self.find(
                "upload-answer-other",
                Severity::Handled,
                &upload.req,
                format!("answered {} with {}", a.status, describe_body(&a.body)),
                "the upload answer has a body other than {Id}: the mount ignores it and confirms by listing",
            );
        }
    }

    /// `GET files?clientId=c`; the check stops if there is no listing to judge.
    async fn list_client(&mut self, c: ClientId, when: &str, purpose: &str) -> Result<Listing, Halt> {
        let req = format!("GET files?clientId={c} ({when})");
        let url = self.url("files", Some(&format!("clientId={c}")))?;
        let rb = self.http.get(url);
        let (idx, r) = self.call(req.clone(), purpose, rb, KeyUse::Real, Keep::Body).await;
        let a = match r {
            Ok(a) => a,
            Err(_) => return Err(self.stop(format!("{req}: no answer to judge"))),
        };
        let Some(rows) = self.json_rows(idx, &a).filter(|_| a.status == 200) else {
            return Err(self.stop(format!("{req}: the listing could not be read")));
        };
        Ok(Listing { idx, req, rows })
    }

    /// List: which file is new? The marker as stored, or `None` when nothing was stored
    /// (the round trip ends there).
    async fn list_after_upload(
        &mut self,
        c: ClientId,
        ids_before: &BTreeSet<String>,
        upload: &Upload,
        t: Transfer,
    ) -> Result<Option<Stored>, Halt> {
        let Listing { idx, req, rows } = self
            .list_client(c, "after the upload", "find the marker file: the id not listed before")
            .await?;
        let new: Vec<&Value> = rows
            .iter()
            .filter(|r| id_text(r.get("Id")).is_some_and(|id| !ids_before.contains(&id)))
            .collect();
        self.observe(idx, format!("{} row(s), {} not listed before", rows.len(), new.len()));
        let Some(own) = pick_own(&new, upload.answered_id.as_ref(), t.marker()) else {
            return self.marker_not_found(idx, c, upload, new.len());
        };
        if upload.lost {
            self.find(
                "upload-error-but-stored",
                Severity::Handled,
                &upload.req,
                "the upload's answer was lost or a server error, yet the file was stored".into(),
                "an upload without a success answer may have landed: the mount lists before sending it again \
                 (it does), so nothing is stored twice",
            );
        }
        let Some(own_id) = id_text(own.get("Id")) else {
            return Err(self.stop("the marker file has no readable Id".into()));
        };
        self.report.leftover = Some(format!(
            "the check's marker file (id {own_id}) is still in client {c}: delete it in IntakeQ"
        ));
        self.observe(idx, format!("marker file id: {own_id}"));
        if upload.answered_id.as_ref().is_some_and(|aid| *aid != own_id) {
            self.observe(idx, "the id the upload answered differs from the listed one".into());
        }
        let name = name_of(own);
        self.judge_stored_name(idx, &req, name.as_deref(), t);
        self.judge_stored_row(idx, &req, own, t);
        Ok(Some(Stored {
            id: own_id,
            name,
            content_type: own.get("ContentType").and_then(Value::as_str).map(str::to_string),
        }))
    }

    /// No new row is the marker: nothing was stored (`Ok(None)`), or the check stops
    /// (an accepted upload not listed, or new files none of which is the marker).
    fn marker_not_found(
        &mut self,
        idx: usize,
        c: ClientId,
        upload: &Upload,
        new: usize,
    ) -> Result<Option<Stored>, Halt> {
        if new > 0 {
            return Err(self.stop(format!(
                "{new} new file(s) appeared and none is recognisably the marker (someone else may be uploading to \
                 client {c}): the check deleted nothing"
            )));
        }
        self.report.leftover = None;
        if upload.accepted {
            self.find(
                "upload-not-listed",
                Severity::Unsafe,
                &upload.req,
                "the upload was answered with success but no new file is listed".into(),
                "the mount cannot confirm its uploads: close() would fail or upload again",
            );
            return Err(self.stop("the uploaded marker file is not listed: nothing to download or delete".into()));
        }
        self.observe(idx, "nothing was stored".into());
        Ok(None)
    }

    /// Is the stored name the one sent, byte for byte?
    fn judge_stored_name(&mut self, idx: usize, list_req: &str, stored: Option<&str>, t: Transfer) {
        match stored {
            Some(n) if n == t.marker() => self.observe(idx, "stored FileName: byte-exact as sent".into()),
            Some(n) => {
                // Shown exactly only while it is recognisably the marker (a name the
                // check chose); anything else is described by shape.
                let shown = if recognisably_marker(n) {
                    escape_exact(n)
                } else {
                    format!("<{}>", describe_string(n))
                };
                self.observe(idx, format!("stored FileName: \"{shown}\""));
                self.find(
                    "stored-name-differs",
                    Severity::Unsafe,
                    list_req,
                    format!("sent \"{}\", stored \"{shown}\"", escape_exact(t.marker())),
                    "the mount finds its uploads by their exact name: such names are not confirmed (close() \
                     fails or uploads again) and show under a different name",
                );
            }
            None => {}
        }
    }

    /// The marker's listed Size, FolderId and ContentType: the size sent, at the top level?
    fn judge_stored_row(&mut self, idx: usize, list_req: &str, own: &Value, t: Transfer) {
        let stored_size = own.get("Size").and_then(Value::as_u64);
        self.observe(
            idx,
            format!(
                "stored Size: {}; FolderId: {}; ContentType: {}",
                stored_size
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unreadable".into()),
                own.get("FolderId").map(shape::kind).unwrap_or("absent"),
                own.get("ContentType")
                    .and_then(Value::as_str)
                    .map(describe_mime)
                    .unwrap_or_else(|| "absent".into())
            ),
        );
        if stored_size.is_some_and(|s| s != MARKER_BYTES.len() as u64) {
            let observed = format!(
                "sent {} bytes, listed Size {}",
                MARKER_BYTES.len(),
                stored_size.unwrap_or(0)
            );
            match t {
                Transfer::Sized => self.find(
                    "stored-size-differs",
                    Severity::Unsafe,
                    list_req,
                    observed,
                    "sizes of uploaded files are wrong: reading them back fails (EIO)",
                ),
                Transfer::Unsized => self.chunked_differs(list_req, observed),
            }
        }
        if own.get("FolderId").is_some_and(|f| !f.is_null()) {
            self.find(
                "upload-in-folder",
                Severity::Degraded,
                list_req,
                "the uploaded file landed in a folder".into(),
                "files written to a client's directory move into a folder directory after upload",
            );
        }
    }

    /// Download the marker and compare: are its bytes the ones sent?
    async fn download_compare(&mut self, own: &Stored, t: Transfer) -> Result<bool, Halt> {
        let dl_req = format!("GET files/{}", own.id);
        let Some((idx, a)) = self
            .get(
                dl_req.clone(),
                "download the marker file and compare",
                &file_path(&own.id),
                None,
                KeyUse::Real,
                Keep::Body,
            )
            .await?
        else {
            return Ok(false);
        };
        if !a.is_success() {
            self.observe(idx, a.describe());
            self.find(
                "download-failed",
                Severity::Unsafe,
                &dl_req,
                format!("the marker file just listed answered {}", a.status),
                "uploaded files cannot be read back",
            );
            return Ok(false);
        }
        self.describe_download(idx, &a, own.content_type.as_deref(), own.name.as_deref());
        if a.body == MARKER_BYTES {
            self.observe(idx, "bytes: identical to the ones sent".into());
            if t == Transfer::Unsized {
                self.observe(
                    idx,
                    "an upload without Content-Length was accepted and stored byte-exact: uploads streamed while \
                     a file is written would work with this service"
                        .into(),
                );
            }
            return Ok(true);
        }
        self.observe(
            idx,
            format!("bytes: {} received, differ from the ones sent", a.received),
        );
        let observed = format!(
            "sent {} bytes, got back {} different bytes",
            MARKER_BYTES.len(),
            a.received
        );
        match t {
            Transfer::Sized => self.find(
                "stored-bytes-differ",
                Severity::Unsafe,
                &dl_req,
                observed,
                "the service changes file contents: files written through the mount come back different",
            ),
            Transfer::Unsized => self.chunked_differs(&dl_req, observed),
        }
        Ok(false)
    }

    /// The upload without Content-Length was stored other than sent. Not a risk to the
    /// mount, which never sends one; a reason never to stream uploads to this service.
    fn chunked_differs(&mut self, req: &str, observed: String) {
        self.find(
            "upload-chunked-differs",
            Severity::Handled,
            req,
            observed,
            "the service stores an upload without Content-Length other than sent: the mount never sends one, \
             and uploads streamed while a file is written must not be built for this service",
        );
    }

    /// `DELETE files/<own id>`: was it accepted?
    async fn delete_marker(&mut self, own_id: &str) -> Result<(), Halt> {
        let del_req = format!("DELETE files/{own_id}");
        let url = self.url(&file_path(own_id), None)?;
        let rb = self.http.delete(url);
        let (idx, r) = self
            .call(
                del_req.clone(),
                "delete the marker file (its own id only)",
                rb,
                KeyUse::Real,
                Keep::Body,
            )
            .await;
        match r {
            Ok(a) => {
                self.observe(idx, a.describe());
                if !a.is_success() {
                    self.find(
                        "delete-failed",
                        Severity::Unsafe,
                        &del_req,
                        format!("answered {} with {}", a.status, describe_body(&a.body)),
                        "the mount cannot delete files: rm fails and an overwrite leaves the old copy",
                    );
                }
                Ok(())
            }
            Err(Fail::Skip) => Ok(()),
            Err(Fail::Halt | Fail::Lost) => Err(Halt),
        }
    }

    /// List again: gone? The others untouched? True if the marker is still listed.
    async fn list_after_delete(
        &mut self,
        c: ClientId,
        ids_before: &BTreeSet<String>,
        own_id: &str,
    ) -> Result<bool, Halt> {
        let Listing { idx, req, rows } = self
            .list_client(
                c,
                "after the delete",
                "confirm the marker is gone and nothing else changed",
            )
            .await?;
        let ids_after: BTreeSet<String> = rows.iter().filter_map(|r| id_text(r.get("Id"))).collect();
        let still_listed = ids_after.contains(own_id);
        if still_listed {
            self.observe(idx, "the marker file is still listed".into());
            self.find(
                "delete-not-effective",
                Severity::Unsafe,
                &req,
                "the deleted file is still listed".into(),
                "deletes do not take effect (or not at once): rm and overwrite leave files behind",
            );
        } else {
            self.observe(idx, "the marker file is gone".into());
            self.report.leftover = None;
        }
        let lost = ids_before.difference(&ids_after).count();
        if lost == 0 {
            self.observe(idx, "every file listed before the check is still listed".into());
        } else {
            self.observe(
                idx,
                format!(
                    "{lost} file(s) listed before the check are gone: someone else changed this client meanwhile \
                     (the check deleted only its marker, id {own_id})"
                ),
            );
        }
        Ok(still_listed)
    }
}
