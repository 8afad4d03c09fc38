//! Deletes: unlink, deleting what a confirmed upload replaced, deletes owed after a
//! failure, and cleaning up after renames given up.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::error::{CoreError, CoreResult};
use super::life::Event;
use super::spool::{Journal, OwedDelete};
use super::staged::lock;
use super::state::Flight;
use super::state::Key;
use super::{Core, Ino, Kind};
use crate::phi::Name;
use crate::remote::{ClientId, Priority, Remote, RemoteError};

impl<R: Remote> Core<R> {
    /// Delete files replaced by an upload the server has. Failures leave both files (never
    /// neither) and are logged; the user's new data is already safe.
    pub(super) async fn delete_replaced(&self, client: ClientId, replaces: &[String], prio: Priority) {
        for old in replaces {
            let name = self.listed_name(client, old);
            let result = match self.remote.delete(old, prio).await {
                Ok(()) | Err(RemoteError::NotFound) => {
                    self.forget_file(client, old);
                    Ok(())
                }
                Err(e) if self.deleted_after_all(client, old, &e, prio).await => {
                    self.forget_file(client, old);
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!("could not delete replaced file {old}: {e}; it is hidden and deleted later");
                    self.owe_delete(client, old).await;
                    Err(format!("{e}; owed, deleted later"))
                }
            };
            self.audit_delete(client, old, &name, result);
        }
    }

    /// Hide a replaced file that could not be deleted, and remember (durably) to delete it.
    pub(super) async fn owe_delete(&self, client: ClientId, id: &str) {
        let d = OwedDelete {
            account: self.opts.account.clone(),
            client,
            id: id.to_string(),
        };
        if let Err(e) = self.spool.owe_delete(&d).await {
            tracing::warn!("cannot record the delete still owed for {id}: {e}; both versions may show after a restart");
        }
        let mut st = self.st();
        st.owed_deletes.insert(id.to_string(), client);
        st.invalidate_view(client);
    }

    /// Try the deletes still owed (background retry, and first thing at mount).
    pub(super) async fn settle_owed_deletes(&self, prio: Priority) {
        let owed: Vec<(String, ClientId)> = self.st().owed_deletes.iter().map(|(i, c)| (i.clone(), *c)).collect();
        for (id, client) in owed {
            let _g = self.flight(Flight::Mutate(client)).await;
            let gone = match self.remote.delete(&id, prio).await {
                Ok(()) | Err(RemoteError::NotFound) => true,
                Err(e) => self.deleted_after_all(client, &id, &e, prio).await,
            };
            if gone {
                tracing::info!("deleted replaced file {id} (owed since an earlier failure)");
                self.spool.settle_delete(&id);
                self.st().owed_deletes.remove(&id);
                self.forget_file(client, &id);
            }
        }
    }

    /// Ids of replaced files still to be deleted (hidden from the mount meanwhile).
    pub fn owed_deletes(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.st().owed_deletes.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// After a DELETE failed ambiguously (answer lost, 5xx), one listing decides whether
    /// the file is gone, as for uploads: the request may have taken effect.
    pub(super) async fn deleted_after_all(&self, client: ClientId, id: &str, e: &RemoteError, prio: Priority) -> bool {
        if !e.is_ambiguous() {
            return false;
        }
        let started = tokio::time::Instant::now();
        match self.remote.list_files(client, prio).await {
            Ok(files) => {
                let gone = !files.iter().any(|f| f.id == id);
                self.store_listing(client, files, started);
                gone
            }
            Err(_) => false,
        }
    }

    /// Delete the copies that renames given up (`State::abandoned`) for the client, to
    /// `name` or to any name, may have left. The caller holds the client's mutation
    /// lock. Until this succeeds nothing else is uploaded under such a name: a copy
    /// made later would look like theirs (same name and size, unknown before).
    pub(super) async fn clean_abandoned(&self, client: ClientId, name: Option<&str>, prio: Priority) -> CoreResult<()> {
        let todo: Vec<(PathBuf, Journal)> = self
            .st()
            .abandoned
            .iter()
            .filter(|(_, j)| j.client == client && name.is_none_or(|n| n == j.name))
            .map(|(p, j)| (p.clone(), j.clone()))
            .collect();
        for (path, j) in todo {
            let a = j.attempts.clone().unwrap_or_default();
            let ours = self.find_attempts(client, &j.name, &a, &j.replaces, prio).await;
            let cleaned = match ours {
                Ok(ours) => {
                    let ids: Vec<String> = ours.into_iter().map(|f| f.id).collect();
                    self.delete_files(client, &ids, prio).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = cleaned {
                tracing::warn!("cannot clean up after the rename to {} yet: {e}", Name(&j.name));
                return Err(e);
            }
            self.spool.remove(&path);
            self.st().abandoned.remove(&path);
        }
        Ok(())
    }

    /// `clean_abandoned` for every client, in the background; failures are logged and
    /// tried again later.
    pub(super) async fn clean_all_abandoned(&self) {
        let clients: BTreeSet<ClientId> = self.st().abandoned.values().map(|j| j.client).collect();
        for c in clients {
            let _g = self.flight(Flight::Mutate(c)).await;
            let _ = self.clean_abandoned(c, None, Priority::Background).await;
        }
    }

    /// Delete files the user no longer wants; a 404, or a file that the listing shows
    /// gone after an ambiguous failure, counts as deleted.
    pub(super) async fn delete_files(&self, client: ClientId, ids: &[String], prio: Priority) -> CoreResult<()> {
        for id in ids {
            let name = self.listed_name(client, id);
            match self.remote.delete(id, prio).await {
                Ok(()) | Err(RemoteError::NotFound) => {}
                Err(e) if self.deleted_after_all(client, id, &e, prio).await => {}
                Err(e) => {
                    self.audit_delete(client, id, &name, Err(e.to_string()));
                    return Err(e.into());
                }
            }
            self.audit_delete(client, id, &name, Ok(()));
            self.forget_file(client, id);
        }
        Ok(())
    }

    /// The name a listed file has on the server ("" if the listing lacks it).
    fn listed_name(&self, client: ClientId, id: &str) -> String {
        self.remote_name_size(client, id).map(|(n, _)| n).unwrap_or_default()
    }

    fn audit_delete(&self, client: ClientId, id: &str, name: &str, result: Result<(), String>) {
        self.audit(crate::audit::Record {
            op: crate::audit::Op::Delete,
            uid: crate::audit::caller(),
            client,
            file_id: Some(id),
            size: None,
            name,
            to: None,
            result,
        });
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> CoreResult<()> {
        let attr = self.lookup(parent, name).await?;
        if attr.kind == Kind::Dir {
            return Err(CoreError::IsDir);
        }
        if self.opts.read_only {
            return Err(CoreError::ReadOnly);
        }
        let (client, _) = self.client_dir(parent)?;
        // Under the client's mutation lock, so that an upload of this file running now
        // (a background retry) has finished and what it landed is deleted too.
        let _g = self.flight(Flight::Mutate(client)).await;
        let (key, _) = self.key_of(attr.ino)?;
        // An Office save deletes the document it set aside (`~WRL….tmp`): still allowed.
        let refused =
            self.no_delete.load(std::sync::atomic::Ordering::Relaxed) && !super::patterns::is_office_save(name);
        if matches!(key, Key::File(_)) && refused {
            tracing::info!("refusing to delete {} from the server: --no-delete", Name(name));
            return Err(CoreError::NotPermitted("deleting files on the server (--no-delete)"));
        }
        let mut doomed = match &key {
            Key::File(id) => vec![id.clone()],
            Key::Local(_) => Vec::new(),
            _ => return Err(CoreError::IsDir),
        };
        let writer = self.st().writer(attr.ino);
        // Discarded from here on, so no close or retry uploads it meanwhile; restored
        // if the delete fails.
        let before = writer.as_ref().map(|w| {
            let mut w = lock(w);
            let before = (w.life().clone(), w.version(), w.name.clone());
            w.step(Event::Discarded);
            before
        });
        let result = async {
            // Copies that failed closes may have left on the server go too, newest first.
            if let Some((a, name)) = before.as_ref().and_then(|(l, _, n)| Some((l.attempts()?, n))) {
                let ours = self.find_attempts(client, name, a, &doomed, Priority::User).await?;
                doomed.splice(0..0, ours.into_iter().map(|f| f.id));
            }
            self.delete_files(client, &doomed, Priority::User).await
        }
        .await;
        if let Err(e) = result {
            if let (Some(w), Some((prev, version, _))) = (&writer, before) {
                lock(w).step(Event::Restored { prev, version });
            }
            return Err(e);
        }
        self.discard_writer(attr.ino);
        if let Key::Local(l) = key {
            let mut st = self.st();
            st.locals.remove(&l);
            st.invalidate_view(client);
        }
        Ok(())
    }
}
