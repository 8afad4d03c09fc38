//! How the rows of a client's file listing are judged against the contract: which
//! fields the mount needs (Id, FileName, Size, DateCreated) are readable, the date's
//! unit, ContentType, and FolderId against the folders `GET folders` listed.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::probe::{id_text, raw_id_text, Prober};
use super::report::Severity;
use super::shape::RowsShape;
use super::Y2000_SECS;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX / 2)
}

/// Of the numeric `DateCreated` values, how many read as Unix seconds and how many as
/// neither milliseconds nor seconds in 2000..now (plus two days of clock skew).
fn date_units(rows: &[Value], now: i64) -> (usize, usize) {
    let (mut secs, mut odd) = (0usize, 0usize);
    for v in rows
        .iter()
        .filter_map(|r| r.get("DateCreated"))
        .filter_map(Value::as_f64)
    {
        let v = v as i64;
        let ms_ok = (Y2000_SECS * 1000..=now + 2 * 86_400_000).contains(&v);
        let s_ok = (Y2000_SECS..=now / 1000 + 2 * 86_400).contains(&v);
        if s_ok {
            secs += 1;
        } else if !ms_ok {
            odd += 1;
        }
    }
    (secs, odd)
}

impl Prober<'_> {
    /// The rows of `GET files?clientId=…`: their shape observed, each deviation found.
    pub(super) fn judge_file_rows(&mut self, idx: usize, req: &str, rows: &[Value]) {
        let shape = RowsShape::of(
            rows,
            &["Id", "DateCreated", "Size", "FileName", "ContentType", "FolderId"],
        );
        for l in shape.describe_lines() {
            self.observe(idx, l);
        }
        self.judge_file_ids(req, &shape);
        self.judge_id_values(req, rows);
        self.judge_names_and_sizes(req, &shape);
        self.judge_dates(req, rows, &shape);
        self.judge_content_types(req, &shape);
        self.judge_file_folders(idx, req, rows, &shape);
    }

    /// Can every file be addressed: rows that are objects, with a readable Id?
    fn judge_file_ids(&mut self, req: &str, shape: &RowsShape) {
        if shape.non_objects > 0 {
            self.find(
                "file-row-not-object",
                Severity::Unsafe,
                req,
                format!("{} of {} rows are not objects", shape.non_objects, shape.rows),
                "files listed that way are invisible to the mount, which then cannot confirm uploads",
            );
        }
        let id = shape.field("Id");
        if id.missing > 0 || id.count_other_than(&["string", "integer"]) > 0 {
            self.find(
                "file-id-unreadable",
                Severity::Unsafe,
                req,
                format!("Id: {}", id.describe()),
                "files without a readable Id cannot be read or deleted, and uploads cannot be confirmed",
            );
        } else if id.count("integer") > 0 {
            self.find(
                "file-id-number",
                Severity::Handled,
                req,
                format!("Id: {}", id.describe()),
                "file ids come as numbers: the mount must read them as text (tolerant parsing)",
            );
        }
    }

    /// Ids the mount refuses (`..`, `a/b`, control characters): such rows are skipped,
    /// and the check never puts them in a URL either.
    fn judge_id_values(&mut self, req: &str, rows: &[Value]) {
        let refused = rows
            .iter()
            .filter_map(|r| raw_id_text(r.get("Id")))
            .filter(|id| id_text(Some(&Value::String(id.clone()))).is_none())
            .count();
        if refused > 0 {
            self.find(
                "file-id-invalid",
                Severity::Unsafe,
                req,
                format!("{refused} of {} rows have an Id that is not a safe path segment (empty, `.`, `..`, `/`, `\\`, control characters)", rows.len()),
                "the mount skips such rows (their files are not shown, uploads that become them are never confirmed); the check sends no request for them",
            );
        }
    }

    /// Are FileName (to confirm uploads) and Size (to check downloads) readable?
    fn judge_names_and_sizes(&mut self, req: &str, shape: &RowsShape) {
        let name = shape.field("FileName");
        if name.missing > 0 || name.count_other_than(&["string"]) > 0 {
            self.find(
                "file-name-unreadable",
                Severity::Unsafe,
                req,
                format!("FileName: {}", name.describe()),
                "the mount finds its uploads by name: without FileName it cannot confirm or overwrite safely",
            );
        }
        let size = shape.field("Size");
        if size.missing > 0 || size.count_other_than(&["integer"]) > 0 {
            self.find(
                "file-size-unreadable",
                Severity::Unsafe,
                req,
                format!("Size: {}", size.describe()),
                "the mount checks every download against Size: files without an integer Size cannot be read",
            );
        }
    }

    /// Is DateCreated a number, whole, and in milliseconds?
    fn judge_dates(&mut self, req: &str, rows: &[Value], shape: &RowsShape) {
        let date = shape.field("DateCreated");
        if date.missing > 0 || date.count_other_than(&["integer", "float"]) > 0 {
            self.find(
                "date-unreadable",
                Severity::Unsafe,
                req,
                format!("DateCreated: {}", date.describe()),
                "the mount picks the newest same-named file by DateCreated to confirm an upload; \
                 without it an overwrite could delete the wrong copy",
            );
        } else if date.count("float") > 0 {
            self.find(
                "date-float",
                Severity::Handled,
                req,
                format!("DateCreated: {}", date.describe()),
                "dates come with a fraction: the mount must round them (tolerant parsing)",
            );
        }
        let (secs, odd) = date_units(rows, now_ms());
        if secs > 0 {
            self.find(
                "date-seconds",
                Severity::Degraded,
                req,
                format!("DateCreated of {secs} row(s) reads as Unix seconds, not milliseconds"),
                "file times show as January 1970, and uploads within one second cannot be told apart by date",
            );
        }
        if odd > 0 {
            self.find(
                "date-out-of-range",
                Severity::Degraded,
                req,
                format!("DateCreated of {odd} row(s) is neither milliseconds nor seconds since 1970 after 2000"),
                "file times are shown wrong",
            );
        }
    }

    /// Is ContentType there (the mount does without it)?
    fn judge_content_types(&mut self, req: &str, shape: &RowsShape) {
        let ct = shape.field("ContentType");
        if ct.missing > 0 || ct.count_other_than(&["string"]) > 0 {
            self.find(
                "content-type-missing",
                Severity::Handled,
                req,
                format!("ContentType: {}", ct.describe()),
                "the mount does not need ContentType (it only shows it nowhere); nothing to change",
            );
        }
    }

    /// Is FolderId readable, and does it name folders `GET folders` listed?
    fn judge_file_folders(&mut self, idx: usize, req: &str, rows: &[Value], shape: &RowsShape) {
        let folder = shape.field("FolderId");
        if folder.missing > 0 || folder.count_other_than(&["string", "null", "integer"]) > 0 {
            self.find(
                "folder-id-absent",
                Severity::Degraded,
                req,
                format!("FolderId: {}", folder.describe()),
                "files in folders show at the client's top level instead of in their folder",
            );
        } else if folder.count("integer") > 0 {
            self.find(
                "file-folder-id-number",
                Severity::Handled,
                req,
                format!("FolderId: {}", folder.describe()),
                "folder ids in file rows come as numbers: the mount must read them as text",
            );
        }
        if let Some(known) = &self.folder_ids {
            let unknown = rows
                .iter()
                .filter_map(|r| id_text(r.get("FolderId")))
                .filter(|f| !known.contains(f))
                .count();
            if unknown > 0 {
                // The mount shows such files in a `_folder-<id>` directory.
                self.observe(
                    idx,
                    format!("{unknown} row(s) name a FolderId that GET folders did not list"),
                );
            }
        }
    }
}
