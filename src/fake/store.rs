//! The fake account's state: clients, folders, files with their bytes, per-endpoint
//! request counters, and the fault plan that tests use to break things on purpose.
//! Transport-neutral: the HTTP server and the in-memory remote both drive it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use super::profile::Profile;
use crate::remote::ClientId;

/// The API calls the fake knows, for counting and for aiming faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    ListFolders,
    ListFiles,
    ListClients,
    Download,
    Upload,
    Delete,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ListFolders,
        Endpoint::ListFiles,
        Endpoint::ListClients,
        Endpoint::Download,
        Endpoint::Upload,
        Endpoint::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ListFolders => "list_folders",
            Endpoint::ListFiles => "list_files",
            Endpoint::ListClients => "list_clients",
            Endpoint::Download => "download",
            Endpoint::Upload => "upload",
            Endpoint::Delete => "delete",
        }
    }

    pub fn from_name(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// One injected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (body `{"Message": ...}`), with an optional `Retry-After`.
    Status { status: u16, retry_after: Option<u64> },
    /// Wait this long before handling the request normally.
    Delay(Duration),
    /// Drop the connection without answering; the request has no effect.
    Drop,
    /// Carry the request out (e.g. store the upload), then drop the connection: the
    /// caller cannot know it succeeded.
    DropAfterEffect,
    /// Downloads: send only the first `bytes` bytes of the body, then cut the
    /// connection (Content-Length stays the full size).
    CutBody { bytes: u64 },
    /// Downloads: declare and send a body `bytes` shorter than the file.
    ShortBody { bytes: u64 },
    /// Never answer (until the connection is closed by the client).
    Hang,
    /// Uploads and deletes: answer success without carrying the request out (a server
    /// that lies, or loses what it accepted).
    Discard,
}

/// A fault aimed at an endpoint (or all), for a number of requests (or forever).
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub endpoint: Option<Endpoint>,
    pub fault: Fault,
    /// How many matching requests it hits; `None` = every one.
    pub times: Option<u32>,
}

/// A file as stored.
#[derive(Clone, Debug)]
pub struct StoredFile {
    pub id: String,
    pub client_id: ClientId,
    pub name: String,
    pub content_type: String,
    pub folder_id: Option<String>,
    pub created_ms: i64,
    pub data: Bytes,
}

/// A client as stored.
#[derive(Clone, Debug)]
pub struct StoredClient {
    pub id: ClientId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub created_ms: i64,
    pub archived: bool,
}

impl StoredClient {
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// What `GET files?clientId=` answers for a client the account does not have
/// (unconfirmed in the real API, so tests try both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownClientFiles {
    #[default]
    EmptyList,
    NotFound,
}

/// How the server reads the name of an upload: verbatim (the default), or as servers
/// that the mount must not trust might (the hostile tier's renaming servers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UploadNames {
    /// Stored exactly as sent.
    #[default]
    Verbatim,
    /// Every upload is stored under another name (`renamed-<name>`).
    Rename,
    /// Leading and trailing white space is stripped.
    StripSpaces,
    /// The multipart escapes are kept: a backslash is stored doubled, a quote as `\"`.
    KeepEscapes,
}

impl UploadNames {
    /// The name such a server stores for an upload sent as `sent`.
    pub fn stored(self, sent: &str) -> String {
        match self {
            UploadNames::Verbatim => sent.to_string(),
            UploadNames::Rename => format!("renamed-{sent}"),
            UploadNames::StripSpaces => sent.trim().to_string(),
            UploadNames::KeepEscapes => sent.replace('\\', "\\\\").replace('"', "\\\""),
        }
    }
}

/// How many requests the ordered log (`State::requests`) keeps between resets.
pub const REQUEST_LOG_MAX: usize = 100_000;

#[derive(Debug, Default)]
pub struct State {
    pub clients: BTreeMap<ClientId, StoredClient>,
    /// Folder id -> name, in listing order.
    pub folders: Vec<(String, String)>,
    /// File id -> file, in creation order (ids are increasing).
    pub files: BTreeMap<String, StoredFile>,
    next_id: u64,
    /// Clock for `DateCreated`; advances 1 s per upload so ordering is strict.
    pub now_ms: i64,
    pub counts: HashMap<Endpoint, u64>,
    /// Counted requests since the last reset, in arrival order: the endpoint and the
    /// client it names (upload path, `clientId` of a listing), if any. The first
    /// [`REQUEST_LOG_MAX`] only, so a server never reset does not grow without bound.
    pub requests: Vec<(Endpoint, Option<String>)>,
    pub faults: VecDeque<FaultRule>,
    /// Requests allowed before every further one answers 429 (a daily budget).
    pub request_budget: Option<u64>,
    /// Whether budget 429s carry `Retry-After` (seconds).
    pub budget_retry_after: Option<u64>,
    /// Download bandwidth cap, bytes per second.
    pub bandwidth: Option<u64>,
    /// Upload bandwidth cap, bytes per second: upload bodies are read no faster (the
    /// client's sending then slows too, as on a link of that speed).
    pub upload_bandwidth: Option<u64>,
    pub unknown_client_files: UnknownClientFiles,
    /// Which unconfirmed answer shapes the server uses.
    pub profile: Profile,
    /// How uploads' names are read (hostile servers rename them).
    pub upload_names: UploadNames,
}

/// The shared fake account. Cheap to clone (an `Arc`).
#[derive(Clone, Debug, Default)]
pub struct Store {
    inner: Arc<Mutex<State>>,
}

/// What a request should do after counting and fault lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Proceed,
    Fault(Fault),
}

impl Store {
    pub fn new() -> Store {
        let store = Store::default();
        store.lock().now_ms = 1_700_000_000_000;
        store
    }

    /// The state, for tests and the server. Never held across an await.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock poisons it; the data is still consistent
        // for a fake, so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- set-up -----

    pub fn add_client(&self, id: ClientId, first: &str, last: &str) {
        let mut s = self.lock();
        let created = s.now_ms;
        s.clients.insert(
            id,
            StoredClient {
                id,
                first_name: first.into(),
                last_name: last.into(),
                email: format!("{}.{}@example.org", first.to_lowercase(), last.to_lowercase()),
                phone: "555-0100".into(),
                created_ms: created,
                archived: false,
            },
        );
    }

    pub fn add_folder(&self, id: &str, name: &str) {
        self.lock().folders.push((id.into(), name.into()));
    }

    /// Add a file directly (set-up and tests); returns its id.
    pub fn add_file(&self, client: ClientId, name: &str, folder: Option<&str>, data: impl Into<Bytes>) -> String {
        let ct = crate::remote::content_type_for(name).to_string();
        self.insert_file(client, name, &ct, folder.map(str::to_string), data.into())
    }

    fn insert_file(
        &self,
        client: ClientId,
        name: &str,
        content_type: &str,
        folder: Option<String>,
        data: Bytes,
    ) -> String {
        let mut s = self.lock();
        s.next_id += 1;
        s.now_ms += 1000;
        let id = format!("f{:08}", s.next_id);
        let file = StoredFile {
            id: id.clone(),
            client_id: client,
            name: name.into(),
            content_type: content_type.into(),
            folder_id: folder,
            created_ms: s.now_ms,
            data,
        };
        s.files.insert(id.clone(), file);
        id
    }

    // ----- faults and counters -----

    pub fn push_fault(&self, endpoint: Option<Endpoint>, fault: Fault, times: Option<u32>) {
        self.lock().faults.push_back(FaultRule { endpoint, fault, times });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn set_request_budget(&self, budget: Option<u64>, retry_after: Option<u64>) {
        let mut s = self.lock();
        s.request_budget = budget;
        s.budget_retry_after = retry_after;
    }

    /// Serve the answer shapes of `profile` from now on.
    pub fn set_profile(&self, profile: Profile) {
        self.lock().profile = profile;
    }

    pub fn profile(&self) -> Profile {
        self.lock().profile
    }

    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.lock().bandwidth = bytes_per_sec;
    }

    pub fn set_upload_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.lock().upload_bandwidth = bytes_per_sec;
    }

    pub fn count(&self, e: Endpoint) -> u64 {
        self.lock().counts.get(&e).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> u64 {
        self.lock().counts.values().sum()
    }

    pub fn reset_counts(&self) {
        let mut s = self.lock();
        s.counts.clear();
        s.requests.clear();
    }

    /// Count a request (authenticated or not) and decide its fate: the first
    /// matching fault rule, else 429 past the request budget, else proceed.
    pub fn admit(&self, e: Endpoint) -> Admission {
        self.admit_for(e, None)
    }

    /// [`Store::admit`], noting in the ordered log (`/_admin/requests`) the client the
    /// request names.
    pub fn admit_for(&self, e: Endpoint, client: Option<String>) -> Admission {
        let mut s = self.lock();
        *s.counts.entry(e).or_insert(0) += 1;
        if s.requests.len() < REQUEST_LOG_MAX {
            s.requests.push((e, client));
        }
        let total: u64 = s.counts.values().sum();
        if let Some(pos) = s.faults.iter().position(|r| r.endpoint.is_none_or(|x| x == e)) {
            let fault = s.faults[pos].fault.clone();
            let exhausted = match &mut s.faults[pos].times {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
                None => false,
            };
            if exhausted {
                s.faults.remove(pos);
            }
            return Admission::Fault(fault);
        }
        if let Some(budget) = s.request_budget {
            if total > budget {
                return Admission::Fault(Fault::Status {
                    status: 429,
                    retry_after: s.budget_retry_after,
                });
            }
        }
        Admission::Proceed
    }

    // ----- the API's operations -----

    pub fn folders(&self) -> Vec<(String, String)> {
        self.lock().folders.clone()
    }

    pub fn has_client(&self, id: ClientId) -> bool {
        self.lock().clients.contains_key(&id)
    }

    /// The client's files in creation order.
    pub fn files_of(&self, client: ClientId) -> Vec<StoredFile> {
        self.lock()
            .files
            .values()
            .filter(|f| f.client_id == client)
            .cloned()
            .collect()
    }

    pub fn file(&self, id: &str) -> Option<StoredFile> {
        self.lock().files.get(id).cloned()
    }

    /// Files of a client with exactly this name (any folder).
    pub fn files_named(&self, client: ClientId, name: &str) -> Vec<StoredFile> {
        self.files_of(client).into_iter().filter(|f| f.name == name).collect()
    }

    /// `POST files/<client>`: lands with no folder; returns the new id (the default profile
    /// does not send it back). `None` if the client does not exist.
    pub fn upload(&self, client: ClientId, name: &str, content_type: &str, data: Bytes) -> Option<String> {
        if !self.has_client(client) {
            return None;
        }
        let name = self.lock().upload_names.stored(name);
        Some(self.insert_file(client, &name, content_type, None, data))
    }

    pub fn delete(&self, id: &str) -> bool {
        self.lock().files.remove(id).is_some()
    }

    /// Clients matching `search` (part of name or email, case-insensitive; a numeric
    /// search matches the id exactly), ordered by id, page from 1.
    pub fn clients_page(&self, search: Option<&str>, page: u32, page_size: usize) -> Vec<StoredClient> {
        let s = self.lock();
        let matches = |c: &StoredClient| match search {
            None | Some("") => true,
            Some(q) => match q.parse::<ClientId>() {
                Ok(id) => c.id == id,
                Err(_) => {
                    let q = q.to_lowercase();
                    c.name().to_lowercase().contains(&q) || c.email.to_lowercase().contains(&q)
                }
            },
        };
        let skip = (page.max(1) as usize - 1) * page_size;
        s.clients
            .values()
            .filter(|c| matches(c))
            .skip(skip)
            .take(page_size)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_lands_without_folder_and_names_may_repeat() {
        let s = Store::new();
        s.add_client(1, "Ada", "Lovelace");
        let a = s.upload(1, "x.txt", "text/plain", Bytes::from_static(b"a")).unwrap();
        let b = s.upload(1, "x.txt", "text/plain", Bytes::from_static(b"b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.files_named(1, "x.txt").len(), 2);
        assert!(s.files_of(1).iter().all(|f| f.folder_id.is_none()));
        assert!(s.upload(2, "x.txt", "text/plain", Bytes::new()).is_none());
    }

    #[test]
    fn faults_apply_in_order_and_expire() {
        let s = Store::new();
        s.push_fault(Some(Endpoint::Download), Fault::Drop, Some(2));
        assert_eq!(s.admit(Endpoint::ListFiles), Admission::Proceed);
        assert_eq!(s.admit(Endpoint::Download), Admission::Fault(Fault::Drop));
        assert_eq!(s.admit(Endpoint::Download), Admission::Fault(Fault::Drop));
        assert_eq!(s.admit(Endpoint::Download), Admission::Proceed);
        assert_eq!(s.count(Endpoint::Download), 3);
    }

    #[test]
    fn budget_answers_429_past_it() {
        let s = Store::new();
        s.set_request_budget(Some(2), None);
        assert_eq!(s.admit(Endpoint::ListFolders), Admission::Proceed);
        assert_eq!(s.admit(Endpoint::ListFolders), Admission::Proceed);
        assert_eq!(
            s.admit(Endpoint::ListFolders),
            Admission::Fault(Fault::Status {
                status: 429,
                retry_after: None
            })
        );
    }

    #[test]
    fn client_search_matches_id_exactly_and_names_partly() {
        let s = Store::new();
        s.add_client(12, "Ada", "Lovelace");
        s.add_client(123, "Alan", "Turing");
        assert_eq!(s.clients_page(Some("12"), 1, 100).len(), 1);
        assert_eq!(s.clients_page(Some("tur"), 1, 100)[0].id, 123);
        assert_eq!(s.clients_page(None, 2, 1)[0].id, 123);
    }
}
