//! What the spool writes down about a staged upload, as JSON beside its bytes: where it
//! goes and what it replaces (`Journal`), the uploads of it that may have landed
//! unconfirmed (`Attempts`), the bound on re-sends (`MAX_SENDS`), and the deletes the
//! mount still owes (`OwedDelete`). Data only; `spool.rs` reads and writes it.

use serde::{Deserialize, Serialize};

use crate::remote::ClientId;

/// What a staged upload is for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Journal {
    /// Which account (a hash of base URL and key) the upload belongs to: a spool
    /// shared by two accounts never sends one account's file to the other.
    pub account: String,
    pub client: ClientId,
    pub name: String,
    /// Files to delete once the upload is confirmed (the overwritten file, the
    /// rename source, an earlier upload of the same handle).
    pub replaces: Vec<String>,
    pub size: u64,
    /// Upload attempts of this staged file so far (this one included), any of which may
    /// have landed without being confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Attempts>,
    /// Given up (a rename that failed): nothing is to be uploaded, and copies that
    /// `attempts` may have left are to be deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// Uploads of these bytes sent so far that no listing has shown under the name,
    /// each counted before it is sent (so a crash or remount never forgets one). At
    /// [`MAX_SENDS`] the mount stops sending (`given_up`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sends: u32,
    /// Given up: [`MAX_SENDS`] uploads were sent and no listing showed the file under
    /// its name (a server that renames what it stores). Never sent again by this mount
    /// or a later one, kept in the spool, shown as failed by `intakeq-fs status`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub given_up: bool,
}

impl Journal {
    /// The entry for an upload of `size` bytes as `name` in `client` that replaces
    /// `replaces`: nothing sent yet, not abandoned, not given up.
    pub fn new(account: &str, client: ClientId, name: &str, replaces: Vec<String>, size: u64) -> Journal {
        Journal {
            account: account.to_string(),
            client,
            name: name.to_string(),
            replaces,
            size,
            attempts: None,
            abandoned: false,
            sends: 0,
            given_up: false,
        }
    }
}

/// Uploads of one staged file sent without a listing showing it under its name, after
/// which the mount gives up on it (the first upload and 2 re-sends): a server that
/// stores every upload under another name gets 3 copies, not one every 2 s forever.
pub const MAX_SENDS: u32 = 3;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Uploads that may have landed unconfirmed (their confirming listing failed): the file
/// ids listed before the first of them, and the size each sent. A file of the same name
/// outside `before` with one of those sizes is one of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempts {
    pub before: Vec<String>,
    pub sizes: Vec<u64>,
}

/// A file replaced through the mount (overwrite, rename) whose DELETE failed: it is
/// hidden from the mount and deleted later, by the background retry or the next mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OwedDelete {
    pub account: String,
    pub client: ClientId,
    pub id: String,
}
