//! Listings and their freshness: folders, a client's files, the client list, with the TTL
//! and single flight (concurrent callers share one request), and the priority they go
//! at: `Browse` on a user's lookup or opendir, `User` when a change needs them,
//! `Refresh` behind a stale answer. A stale listing is served rather than queued for
//! when the budget is under pressure, and refreshed behind (`refresh.rs`).

use std::sync::Arc;

use tokio::time::Instant;

use super::bursts::{listing_priority, Bursts};
use super::error::{CoreError, CoreResult};
use super::state::{fresh, Due, Flight, Listing, State};
use super::Core;
use crate::remote::{Client, ClientId, Priority, Remote, RemoteError, RemoteFile};

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

    /// Make sure the account's folders are known. Folders of any age serve (they are
    /// account settings and change rarely; a file in a folder not yet known shows under
    /// `_folder-<id>`), refreshed behind once older than `client_list_ttl`. Uploads
    /// cannot choose a folder, so no change depends on their freshness either: a
    /// `cp -r` that outlasts the metadata TTL fetches no folders.
    pub(super) async fn ensure_folders(&self) -> CoreResult<()> {
        let since = Instant::now();
        let prio = listing_priority();
        let age = self.st().folders.as_ref().map(|(_, at)| at.elapsed());
        if let Some(age) = age {
            if age >= self.opts.client_list_ttl {
                self.due(Due::Folders);
            }
            return Ok(());
        }
        let _g = self.flight(Flight::Folders).await;
        if matches!(&self.st().folders, Some((_, at)) if fresh(*at, self.opts.metadata_ttl, Some(since))) {
            return Ok(());
        }
        let folders = self.remote.list_folders(prio).await?;
        self.store_folders(folders);
        Ok(())
    }

    pub(super) fn store_folders(&self, folders: Vec<crate::remote::Folder>) {
        let saved = self.disk.as_ref().map(|_| super::persist::folders_record(&folders));
        {
            let mut st = self.st();
            let changed = st.folders.as_ref().is_none_or(|(old, _)| *old != folders);
            st.folders = Some((folders, Instant::now()));
            if changed {
                for c in st.clients.values_mut() {
                    c.view = None;
                }
            }
        }
        if let (Some(disk), Some(rec)) = (&self.disk, saved) {
            disk.save(super::persist::FOLDERS, &rec);
        }
    }

    /// What the limiter has spent and holds back (used this minute and today, the
    /// reserve, whether listings are refused to protect it), for a status display; no call.
    pub fn budget(&self) -> Option<crate::limiter::Budget> {
        self.remote.limiter().map(|l| l.budget())
    }

    /// Would a listing at `prio` wait for the limiter now? Then a stale one is served
    /// instead.
    pub(super) fn under_pressure(&self, prio: Priority) -> bool {
        self.remote.limiter().is_some_and(|l| l.under_pressure_at(prio))
    }

    /// True if some listing of `c` is in memory (loading the saved one if there is one).
    fn has_listing(&self, c: ClientId) -> bool {
        if self.st().clients.get(&c).is_some_and(|cs| cs.listing.is_some()) {
            return true;
        }
        self.load_listing(c)
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
        let have = self.has_listing(c);
        if is_fresh(&self.st(), None) {
            return Ok(());
        }
        if have && self.batch_running(c) {
            // The batch's own confirming listing refreshes it: a `cp -r` that outlasts
            // the TTL costs no listing per minute.
            tracing::debug!(client = c, "a batch of ours is running: its listing in hand serves");
            return Ok(());
        }
        let asking = Bursts::ask(&self.bursts, Some(c));
        let prio = asking.prio;
        if have && prio != Priority::User && self.under_pressure(prio) {
            tracing::debug!(client = c, "budget under pressure: serving the stale listing");
            self.due(Due::Files(c));
            return Ok(());
        }
        let _g = self.flight(Flight::Files(c)).await;
        if is_fresh(&self.st(), Some(since)) {
            return Ok(());
        }
        let started = Instant::now();
        let files = match self.remote.list_files(c, prio).await {
            Ok(f) => f,
            Err(RemoteError::NotFound) => {
                self.st().client(c).known = Some((false, Instant::now()));
                return Err(CoreError::NotFound);
            }
            Err(RemoteError::WouldWait { .. }) if have && prio != Priority::User => {
                tracing::debug!(client = c, "no slot for a fresh listing: serving the stale one");
                self.due(Due::Files(c));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.store_listing(c, files, started);
        Ok(())
    }

    /// Keep a listing of client `c` that was requested at `started` (or later): it
    /// confirms the client's accepted uploads (`confirm_from_listing`), and is kept on
    /// disk when listings are.
    pub(super) fn store_listing(&self, c: ClientId, files: Vec<RemoteFile>, started: Instant) {
        self.confirm_from_listing(c, &files, started);
        let saved = self
            .disk
            .as_ref()
            .map(|_| super::persist::files_record(&files, Instant::now()));
        {
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
        if let (Some(disk), Some(rec)) = (&self.disk, saved) {
            disk.save(&super::persist::files_name(c), &rec);
        }
    }

    /// Does the account have client `c`? Never fetches the client list: costs no call
    /// when anything is known (the list of any age names it, a listing had files),
    /// else one listing of its files (needed next anyway) and, only if that is empty,
    /// one exact search of the Clients API.
    pub(super) async fn ensure_client(&self, c: ClientId) -> CoreResult<()> {
        {
            let st = self.st();
            let ttl = self.opts.metadata_ttl;
            if let Some(cs) = st.clients.get(&c) {
                if let Some((exists, at)) = cs.known {
                    // An id the account does not have stays unknown for as long as the
                    // client list is trusted: repeated lookups (a typo in a script, or
                    // another local user probing ids on an --allow-other mount) cost
                    // nothing after the first.
                    if exists || at.elapsed() < ttl.max(self.opts.client_list_ttl) {
                        return if exists { Ok(()) } else { Err(CoreError::NotFound) };
                    }
                }
            }
            if let Some((list, at)) = &st.client_list {
                if list.binary_search_by_key(&c, |r| r.id).is_ok() {
                    return Ok(());
                }
                if at.elapsed() < ttl {
                    return Err(CoreError::NotFound);
                }
            }
        }
        if self.has_listing(c)
            && self
                .st()
                .clients
                .get(&c)
                .is_some_and(|cs| cs.listing.as_ref().is_some_and(|l| !l.files.is_empty()))
        {
            // A listing kept from an earlier mount had files: the client existed.
            return Ok(());
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
        let asking = Bursts::ask(&self.bursts, Some(c));
        let rows = self.remote.list_clients(Some(&c.to_string()), 1, asking.prio).await?;
        drop(asking);
        let exists = rows.iter().any(|r| r.id == c);
        self.st().client(c).known = Some((exists, Instant::now()));
        if exists {
            Ok(())
        } else {
            tracing::debug!(client = c, "no such client");
            Err(CoreError::NotFound)
        }
    }

    /// The client list for `/clients` and `/by-name`: whatever is known, of any age;
    /// one older than `client_list_ttl` is refreshed behind the answer. Only when none
    /// is known at all does the caller wait for it (all pages, at `Priority::Refresh`:
    /// its pages are not a crawl, and never spend the reserve).
    pub(super) async fn client_list(&self) -> CoreResult<Arc<Vec<Client>>> {
        // Bound first: the state guard must be gone before `due` takes the lock again.
        let known = self.st().client_list.clone();
        if let Some((list, at)) = known {
            if at.elapsed() >= self.opts.client_list_ttl {
                self.due(Due::ClientList);
            }
            return Ok(list);
        }
        Ok(self.fetch_client_list(Priority::Refresh, None).await?)
    }

    /// Fetch the whole client list (100 a page) unless someone else fetched it since
    /// `since` (or, with `since` None, while we waited for the flight).
    pub(super) async fn fetch_client_list(
        &self,
        prio: Priority,
        since: Option<Instant>,
    ) -> Result<Arc<Vec<Client>>, RemoteError> {
        let since = since.unwrap_or_else(Instant::now);
        let _g = self.flight(Flight::Clients).await;
        let known = self.st().client_list.clone();
        if let Some((list, at)) = known {
            if at >= since {
                return Ok(list);
            }
        }
        let mut rows = Vec::new();
        for page in 1.. {
            let got = self.remote.list_clients(None, page, prio).await?;
            let n = got.len();
            rows.extend(got);
            if n < crate::remote::CLIENT_PAGE_SIZE {
                break;
            }
        }
        Ok(self.store_client_list(rows))
    }

    pub(super) fn store_client_list(&self, mut rows: Vec<Client>) -> Arc<Vec<Client>> {
        rows.sort_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        let saved = self.disk.as_ref().map(|_| super::persist::clients_record(&rows));
        let list = Arc::new(rows);
        {
            let mut st = self.st();
            let now = Instant::now();
            for r in list.iter() {
                st.client(r.id).known = Some((true, now));
            }
            if st.client_list.as_ref().is_none_or(|(old, _)| *old != list) {
                st.by_name = None;
            }
            st.client_list = Some((list.clone(), now));
        }
        if let (Some(disk), Some(rec)) = (&self.disk, saved) {
            disk.save(super::persist::CLIENTS, &rec);
        }
        list
    }

    /// One call at mount time that proves the key and the address work; its answer
    /// (the folders) is kept, since every client directory needs it anyway.
    pub async fn check_access(&self) -> Result<(), RemoteError> {
        let folders = self.remote.list_folders(Priority::User).await?;
        self.store_folders(folders);
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
        let saved = {
            let mut st = self.st();
            st.shown.remove(id);
            st.mtimes.remove(id);
            let cs = st.client(client);
            let mut saved = None;
            if let Some(l) = cs.listing.as_mut() {
                l.files.retain(|f| f.id != id);
                // The kept copy must not bring the file back at the next mount.
                saved = self.disk.as_ref().map(|_| super::persist::files_record(&l.files, l.at));
            }
            cs.view = None;
            saved
        };
        if let (Some(disk), Some(rec)) = (&self.disk, saved) {
            disk.save(&super::persist::files_name(client), &rec);
        }
    }
}
