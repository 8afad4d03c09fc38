//! Listings and their freshness: folders, a client's files, the client list, with the TTL
//! and single flight (concurrent callers share one request).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{CoreError, CoreResult};
use super::state::State;
use super::view::{DirKey, DirView};
use super::Core;
use crate::remote::{ClientId, Priority, Remote, RemoteError, RemoteFile};

#[derive(Debug)]
pub(super) struct Listing {
    /// The rows, as the server sent them.
    pub(super) files: Vec<RemoteFile>,
    /// When they were fetched.
    pub(super) at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// The client's files, once listed.
    pub(super) listing: Option<Listing>,
    /// Its directories as shown, computed from the listing (dropped when it changes).
    pub(super) view: Option<Arc<HashMap<DirKey, DirView>>>,
    /// Existence known from the Clients API, with when we learned it.
    pub(super) known: Option<(bool, Instant)>,
}

/// Which fetch a single-flight lock guards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Flight {
    /// `GET folders`.
    Folders,
    /// `GET files?clientId=`.
    Files(ClientId),
    /// The client list (all pages).
    Clients,
    /// Mutations of one client (uploads, deletes, renames) run one at a time.
    Mutate(ClientId),
}

/// Fresh if younger than the TTL, or fetched after `since` (by the request we
/// queued behind: single flight even with a TTL of zero).
pub(super) fn fresh(at: Instant, ttl: Duration, since: Option<Instant>) -> bool {
    at.elapsed() < ttl || since.is_some_and(|s| at >= s)
}

impl<R: Remote> Core<R> {
    pub(super) async fn flight(&self, f: Flight) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(f)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        lock.lock_owned().await
    }

    pub(super) async fn ensure_folders(&self) -> CoreResult<()> {
        let since = Instant::now();
        if matches!(&self.st().folders, Some((_, at)) if at.elapsed() < self.opts.metadata_ttl) {
            return Ok(());
        }
        let _g = self.flight(Flight::Folders).await;
        if matches!(&self.st().folders, Some((_, at)) if fresh(*at, self.opts.metadata_ttl, Some(since))) {
            return Ok(());
        }
        let folders = self.remote.list_folders(Priority::User).await?;
        let mut st = self.st();
        let changed = st.folders.as_ref().is_none_or(|(old, _)| *old != folders);
        st.folders = Some((folders, Instant::now()));
        if changed {
            for c in st.clients.values_mut() {
                c.view = None;
            }
        }
        Ok(())
    }

    /// Make sure the client's file listing is fresh; `Ok(false)` if the remote says
    /// the client does not exist.
    pub(super) async fn ensure_listing(&self, c: ClientId) -> CoreResult<()> {
        let since = Instant::now();
        let is_fresh = |st: &State, since: Option<Instant>| {
            st.clients
                .get(&c)
                .and_then(|cs| cs.listing.as_ref())
                .is_some_and(|l| fresh(l.at, self.opts.metadata_ttl, since))
        };
        if is_fresh(&self.st(), None) {
            return Ok(());
        }
        let _g = self.flight(Flight::Files(c)).await;
        if is_fresh(&self.st(), Some(since)) {
            return Ok(());
        }
        let started = Instant::now();
        let files = match self.remote.list_files(c, Priority::User).await {
            Ok(f) => f,
            Err(RemoteError::NotFound) => {
                self.st().client(c).known = Some((false, Instant::now()));
                return Err(CoreError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        self.store_listing(c, files, started);
        Ok(())
    }

    /// Keep a listing of client `c` that was requested at `started` (or later); it also
    /// confirms the client's accepted uploads (`confirm_from_listing`).
    pub(super) fn store_listing(&self, c: ClientId, files: Vec<RemoteFile>, started: Instant) {
        self.confirm_from_listing(c, &files, started);
        let mut st = self.st();
        let cs = st.client(c);
        let changed = cs.listing.as_ref().is_none_or(|l| l.files != files);
        if !files.is_empty() {
            cs.known = Some((true, Instant::now()));
        }
        cs.listing = Some(Listing {
            files,
            at: Instant::now(),
        });
        if changed {
            cs.view = None;
        }
    }

    /// Does the account have client `c`? Costs no call when anything is known, else
    /// one listing of its files (needed next anyway) and, only if that is empty, one
    /// exact search of the Clients API.
    pub(super) async fn ensure_client(&self, c: ClientId) -> CoreResult<()> {
        {
            let st = self.st();
            let ttl = self.opts.metadata_ttl;
            if let Some(cs) = st.clients.get(&c) {
                if let Some((exists, at)) = cs.known {
                    if at.elapsed() < ttl || exists {
                        return if exists { Ok(()) } else { Err(CoreError::NotFound) };
                    }
                }
            }
            if let Some((ids, at)) = &st.client_list {
                if at.elapsed() < ttl {
                    return if ids.contains(&c) {
                        Ok(())
                    } else {
                        Err(CoreError::NotFound)
                    };
                }
            }
        }
        self.ensure_listing(c).await?;
        let has_files = self
            .st()
            .clients
            .get(&c)
            .and_then(|cs| cs.listing.as_ref())
            .is_some_and(|l| !l.files.is_empty());
        if has_files {
            return Ok(());
        }
        let rows = self
            .remote
            .list_clients(Some(&c.to_string()), 1, Priority::User)
            .await?;
        let exists = rows.iter().any(|r| r.id == c);
        self.st().client(c).known = Some((exists, Instant::now()));
        if exists {
            Ok(())
        } else {
            tracing::debug!(client = c, "no such client");
            Err(CoreError::NotFound)
        }
    }

    pub(super) async fn ensure_client_list(&self) -> CoreResult<Vec<ClientId>> {
        let since = Instant::now();
        let cached = |st: &State, since: Option<Instant>| match &st.client_list {
            Some((ids, at)) if fresh(*at, self.opts.metadata_ttl, since) => Some(ids.clone()),
            _ => None,
        };
        if let Some(ids) = cached(&self.st(), None) {
            return Ok(ids);
        }
        let _g = self.flight(Flight::Clients).await;
        if let Some(ids) = cached(&self.st(), Some(since)) {
            return Ok(ids);
        }
        let mut ids = Vec::new();
        for page in 1.. {
            let rows = self.remote.list_clients(None, page, Priority::User).await?;
            let n = rows.len();
            ids.extend(rows.into_iter().map(|r| r.id));
            if n < crate::remote::CLIENT_PAGE_SIZE {
                break;
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut st = self.st();
        let now = Instant::now();
        for id in &ids {
            st.client(*id).known = Some((true, now));
        }
        st.client_list = Some((ids.clone(), now));
        Ok(ids)
    }

    /// One call at mount time that proves the key and the address work; its answer
    /// (the folders) is kept, since every client directory needs it anyway.
    pub async fn check_access(&self) -> Result<(), RemoteError> {
        let folders = self.remote.list_folders(Priority::User).await?;
        self.st().folders = Some((folders, Instant::now()));
        Ok(())
    }

    /// Ids of the client's files in the cached listing.
    pub(super) fn known_ids(&self, client: ClientId) -> Vec<String> {
        let st = self.st();
        st.clients
            .get(&client)
            .and_then(|cs| cs.listing.as_ref())
            .map(|l| l.files.iter().map(|f| f.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Drop a deleted file from the cached listing and content cache.
    pub(super) fn forget_file(&self, client: ClientId, id: &str) {
        self.cache().remove(id);
        let mut st = self.st();
        st.shown.remove(id);
        st.mtimes.remove(id);
        let cs = st.client(client);
        if let Some(l) = cs.listing.as_mut() {
            l.files.retain(|f| f.id != id);
        }
        cs.view = None;
    }
}
