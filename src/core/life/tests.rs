//! The life-cycle table's test: every cell of `life.rs`'s doc table checked against
//! `Cycle::step`, and the record's rules.

use super::*;

fn attempts() -> Attempts {
    Attempts {
        before: vec!["old".into()],
        sizes: vec![3],
    }
}

/// One writer in each state of the table's rows, as the table's name says.
fn in_state(row: &str) -> Cycle {
    let life = match row {
        "Staged" => Life::Staged,
        "Uploading" => Life::Uploading {
            version: 0,
            attempts: attempts(),
            prior: None,
        },
        "Failed" => Life::Failed { attempts: None },
        "Landed" => Life::Landed { id: Some("f1".into()) },
        "Unconfirmed" => Life::Unconfirmed {
            attempts: attempts(),
            at: Instant::now(),
        },
        "Local" => Life::Local,
        "GivenUp" => Life::GivenUp,
        "Discarded" => Life::Discarded,
        other => panic!("a row the test does not know: {other}"),
    };
    Cycle::new(life, vec!["f0".into()])
}

fn event(column: &str) -> Event {
    match column {
        "Changed" => Event::Changed,
        "UploadStarts" => Event::UploadStarts(attempts()),
        "Landed" => Event::Landed(Some("f2".into())),
        "NotLanded" => Event::NotLanded,
        "MaybeLanded" => Event::MaybeLanded,
        "Accepted" => Event::Accepted,
        "Confirmed" => Event::Confirmed("f2".into()),
        "Missing" => Event::Missing,
        "GiveUp" => Event::GiveUp,
        "Renamed" => Event::Renamed(vec!["f3".into()]),
        "RenamedScratch" => Event::RenamedScratch,
        "Discarded" => Event::Discarded,
        "Restored" => Event::Restored {
            prev: Life::Landed { id: Some("f1".into()) },
            version: 0,
        },
        other => panic!("a column the test does not know: {other}"),
    }
}

fn name(l: &Life) -> &'static str {
    match l {
        Life::Staged => "Staged",
        Life::Uploading { .. } => "Uploading",
        Life::Failed { .. } => "Failed",
        Life::Landed { .. } => "Landed",
        Life::Unconfirmed { .. } => "Unconfirmed",
        Life::Local => "Local",
        Life::GivenUp => "GivenUp",
        Life::Discarded => "Discarded",
    }
}

/// The table in this file's own doc comment, cell by cell: rows, columns, cells.
fn doc_table() -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let src = include_str!("../life.rs");
    let rows: Vec<Vec<String>> = src
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .skip_while(|l| !l.starts_with("| now \\ event"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let header = rows[0][1..].to_vec();
    let body = rows[2..].iter().map(|r| (r[0].clone(), r[1..].to_vec())).collect();
    (header, body)
}

#[test]
fn every_cell_of_the_table_is_what_step_does() {
    let (columns, rows) = doc_table();
    assert_eq!(columns.len(), 13, "{columns:?}");
    assert_eq!(rows.len(), 8);
    for (row, cells) in &rows {
        assert_eq!(cells.len(), columns.len(), "row {row}");
        for (column, cell) in columns.iter().zip(cells) {
            let mut c = in_state(row);
            let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let r = c.step(event(column));
                (r, name(c.life()))
            }));
            let want = cell.trim_end_matches(['¹', '²', '³', '⁴']);
            match (want, got) {
                // Impossible: a debug build panics (the release build returns Err).
                ("·", Err(_)) => {}
                ("·", Ok((r, _))) => assert!(r.is_err(), "{row} × {column}: the table says impossible"),
                ("=", Ok((Ok(()), now))) => assert_eq!(now, row.as_str(), "{row} × {column}"),
                ("⁴" | "", Ok((Ok(()), now))) => assert_eq!(now, "Landed", "{row} × {column}: back to prev"),
                (w, Ok((Ok(()), now))) => assert_eq!(now, w, "{row} × {column}"),
                (w, other) => panic!("{row} × {column}: table says {w}, step gave {:?}", other.map(|o| o.1)),
            }
        }
    }
}

#[test]
fn the_footnoted_cells_depend_on_whether_the_bytes_changed() {
    // ¹ Landed while written meanwhile: Staged.
    let mut c = in_state("Staged");
    c.step(Event::UploadStarts(attempts())).unwrap();
    c.step(Event::Changed).unwrap();
    c.step(Event::Landed(Some("f2".into()))).unwrap();
    assert_eq!(*c.life(), Life::Staged);
    // ² NotLanded keeps the earlier record; ³ MaybeLanded and Accepted-after-a-write
    // keep this attempt's.
    let mut c = in_state("Failed");
    c.step(Event::UploadStarts(attempts())).unwrap();
    c.step(Event::NotLanded).unwrap();
    assert_eq!(*c.life(), Life::Failed { attempts: None });
    let mut c = in_state("Staged");
    c.step(Event::UploadStarts(attempts())).unwrap();
    c.step(Event::Changed).unwrap();
    c.step(Event::Accepted).unwrap();
    assert_eq!(
        *c.life(),
        Life::Failed {
            attempts: Some(attempts())
        }
    );
    // ⁴ Restored to Landed, but written since: Staged.
    let mut c = in_state("Discarded");
    c.step(Event::Changed).unwrap();
    c.step(Event::Restored {
        prev: Life::Landed { id: None },
        version: 0,
    })
    .unwrap();
    assert_eq!(*c.life(), Life::Staged);
}

#[test]
fn waits_follow_the_second_table() {
    let mut c = in_state("Staged");
    c.step(Event::ClosedUnwritten).unwrap();
    assert_eq!(c.wait(), Wait::Release);
    c.step(Event::ClosedByChild).unwrap();
    assert_eq!(c.wait(), Wait::Opener);
    c.step(Event::ClosedByOpener).unwrap();
    assert_eq!(c.wait(), Wait::No);
    c.step(Event::ClosedUnwritten).unwrap();
    c.step(Event::Changed).unwrap();
    assert_eq!(c.wait(), Wait::No, "written at last");
    c.step(Event::ClosedUnwritten).unwrap();
    assert_eq!(c.wait(), Wait::No, "written once: a close uploads");
    let t = Instant::now();
    c.step(Event::Released(t)).unwrap();
    assert_eq!(c.released_at(), None, "nothing deferred");
    c.step(Event::Created(Wait::Rename)).unwrap();
    c.step(Event::Released(t)).unwrap();
    assert_eq!(c.released_at(), Some(t));
    c.step(Event::Due).unwrap();
    assert_eq!(c.wait(), Wait::No);
}

#[test]
fn what_the_next_upload_replaces_and_the_send_count() {
    let mut c = in_state("Staged");
    c.step(Event::SendsCounted(2)).unwrap();
    c.step(Event::UploadStarts(attempts())).unwrap();
    c.step(Event::Accepted).unwrap();
    assert!(c.replaces().is_empty(), "deleted by the accepted upload");
    c.step(Event::Confirmed("f9".into())).unwrap();
    assert_eq!((c.replaces(), c.sends()), (&["f9".to_string()][..], 0));
    c.step(Event::Moved("f10".into())).unwrap();
    assert_eq!(c.replaces(), ["f10".to_string()]);
    let mut c = in_state("GivenUp");
    c.step(Event::SendsCounted(3)).unwrap();
    c.step(Event::Renamed(vec!["f4".into()])).unwrap();
    assert_eq!((c.life(), c.sends()), (&Life::Staged, 0), "renamed: a new try");
    assert_eq!(c.replaces(), ["f0".to_string(), "f4".to_string()]);
    c.step(Event::RenamedScratch).unwrap();
    assert_eq!((c.life(), c.replaces().len()), (&Life::Local, 0));
}

#[test]
fn an_earlier_copy_can_match_only_while_the_bytes_it_sent_are_the_latest() {
    let mut c = in_state("Staged");
    assert!(c.prior_may_match(), "nothing sent yet");
    c.step(Event::UploadStarts(attempts())).unwrap();
    c.step(Event::Accepted).unwrap();
    assert!(matches!(c.life(), Life::Unconfirmed { .. }));
    assert!(c.prior_may_match(), "accepted, unchanged since");
    c.step(Event::Changed).unwrap();
    assert!(matches!(c.life(), Life::Failed { .. }));
    assert!(!c.prior_may_match(), "written after the upload started");
}
