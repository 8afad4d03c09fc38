//! `MemRemote`: the `Remote` trait served straight from a fake [`Store`], with no HTTP,
//! so core tests run fast and can inject the same faults the fake server does.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{ByteStream, Client, ClientId, Folder, Priority, Remote, RemoteError, RemoteFile};
use crate::fake::store::{Admission, Endpoint, Fault, Store, StoredFile, UnknownClientFiles};
use crate::limiter::Limiter;

/// The in-memory remote. Faults from the store's plan are honoured the way the HTTP
/// client would see them (a dropped connection is a `Network` error, and so on).
#[derive(Clone, Debug)]
pub struct MemRemote {
    pub store: Store,
    limiter: Arc<Limiter>,
}

impl MemRemote {
    pub fn new(store: Store) -> MemRemote {
        MemRemote {
            store,
            limiter: Arc::new(Limiter::unlimited()),
        }
    }

    pub fn with_limiter(store: Store, limiter: Arc<Limiter>) -> MemRemote {
        MemRemote { store, limiter }
    }

    /// Count the request (in the store's ordered log with the client it names), apply a
    /// fault if one is planned. `Ok(true)`: proceed, then fail as if the answer was
    /// lost (`DropAfterEffect`).
    async fn admit(&self, e: Endpoint, client: Option<String>, prio: Priority) -> Result<Option<Fault>, RemoteError> {
        self.limiter.acquire(prio, e.name()).await?;
        match self.store.admit_for(e, client) {
            Admission::Proceed => Ok(None),
            Admission::Fault(f) => match f {
                Fault::Status { status, .. } => Err(status_error(status)),
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    Ok(None)
                }
                Fault::Drop | Fault::Hang => Err(RemoteError::Network("connection dropped".into())),
                other => Ok(Some(other)),
            },
        }
    }
}

fn status_error(status: u16) -> RemoteError {
    match status {
        401 | 403 => RemoteError::Unauthorized { status },
        404 => RemoteError::NotFound,
        429 => RemoteError::RateLimited,
        500..=599 => RemoteError::Server { status },
        _ => RemoteError::Rejected {
            status,
            message: "injected".into(),
        },
    }
}

fn listed(f: &StoredFile) -> RemoteFile {
    RemoteFile {
        id: f.id.clone(),
        name: f.name.clone(),
        size: f.data.len() as u64,
        created_ms: f.created_ms,
        content_type: f.content_type.clone(),
        folder_id: f.folder_id.clone(),
    }
}

fn lost_answer() -> RemoteError {
    RemoteError::Network("connection closed before the answer".into())
}

impl Remote for MemRemote {
    fn limiter(&self) -> Option<&Limiter> {
        Some(&self.limiter)
    }

    async fn list_folders(&self, prio: Priority) -> Result<Vec<Folder>, RemoteError> {
        let fault = self.admit(Endpoint::ListFolders, None, prio).await?;
        let out = self
            .store
            .folders()
            .into_iter()
            .map(|(id, name)| Folder { id, name })
            .collect();
        if fault.is_some() {
            return Err(lost_answer());
        }
        Ok(out)
    }

    async fn list_files(&self, client: ClientId, prio: Priority) -> Result<Vec<RemoteFile>, RemoteError> {
        let fault = self.admit(Endpoint::ListFiles, Some(client.to_string()), prio).await?;
        if fault.is_some() {
            return Err(lost_answer());
        }
        if !self.store.has_client(client) && self.store.lock().unknown_client_files == UnknownClientFiles::NotFound {
            return Err(RemoteError::NotFound);
        }
        Ok(self.store.files_of(client).iter().map(listed).collect())
    }

    async fn list_clients(&self, search: Option<&str>, page: u32, prio: Priority) -> Result<Vec<Client>, RemoteError> {
        let fault = self
            .admit(Endpoint::ListClients, search.map(str::to_string), prio)
            .await?;
        if fault.is_some() {
            return Err(lost_answer());
        }
        Ok(self
            .store
            .clients_page(search, page, super::CLIENT_PAGE_SIZE)
            .into_iter()
            .map(|c| Client {
                id: c.id,
                name: c.name(),
            })
            .collect())
    }

    async fn download(&self, file_id: &str, expected_size: u64, prio: Priority) -> Result<ByteStream, RemoteError> {
        let fault = self.admit(Endpoint::Download, None, prio).await?;
        let file = self.store.file(file_id).ok_or(RemoteError::NotFound)?;
        let data = file.data;
        let (body, tail): (Bytes, Option<RemoteError>) = match fault {
            Some(Fault::CutBody { bytes }) => {
                let n = (bytes as usize).min(data.len());
                (
                    data.slice(..n),
                    Some(RemoteError::Network("connection reset mid-body".into())),
                )
            }
            Some(Fault::ShortBody { bytes }) => {
                let n = data.len().saturating_sub(bytes as usize);
                (data.slice(..n), None)
            }
            Some(_) => return Err(lost_answer()),
            None => (data, None),
        };
        let got = body.len() as u64;
        let tail = tail.or(if got != expected_size {
            Some(RemoteError::Truncated {
                got,
                expected: expected_size,
            })
        } else {
            None
        });
        // Hand the body out in 64 KiB chunks, as a network would.
        let mut items: Vec<Result<Bytes, RemoteError>> = Vec::new();
        let mut off = 0;
        while off < body.len() {
            let end = (off + 65536).min(body.len());
            items.push(Ok(body.slice(off..end)));
            off = end;
        }
        if let Some(e) = tail {
            items.push(Err(e));
        }
        Ok(Box::pin(futures_util::stream::iter(items)))
    }

    async fn upload(
        &self,
        client: ClientId,
        file_name: &str,
        content_type: &str,
        path: &Path,
        prio: Priority,
    ) -> Result<(), RemoteError> {
        let fault = self.admit(Endpoint::Upload, Some(client.to_string()), prio).await?;
        if fault == Some(Fault::Discard) {
            return Ok(());
        }
        let data = super::read_local(path)?;
        if self
            .store
            .upload(client, file_name, content_type, Bytes::from(data))
            .is_none()
        {
            return Err(RemoteError::NotFound);
        }
        if fault.is_some() {
            return Err(lost_answer());
        }
        Ok(())
    }

    async fn delete(&self, file_id: &str, prio: Priority) -> Result<(), RemoteError> {
        let fault = self.admit(Endpoint::Delete, None, prio).await?;
        if fault == Some(Fault::Discard) {
            return Ok(());
        }
        let existed = self.store.delete(file_id);
        if fault.is_some() {
            return Err(lost_answer());
        }
        if existed {
            Ok(())
        } else {
            Err(RemoteError::NotFound)
        }
    }
}
