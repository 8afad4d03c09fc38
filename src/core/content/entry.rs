//! One cached file's bytes, complete or arriving: where they are kept (memory or an
//! unlinked temp file), how a download fills them, and reads that wait only for the
//! bytes they ask for.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::core::blocking;
use crate::core::error::{CoreError, CoreResult};
use crate::remote::{ByteStream, RemoteError};

/// Where an entry's bytes are kept.
#[derive(Debug)]
pub(super) enum Backing {
    Memory(Vec<u8>),
    /// An already-unlinked temp file: freed when the last reader lets go.
    Disk(File),
}

/// How far a download has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    Filling(u64),
    Done,
    Failed(RemoteError),
}

/// One file's bytes, complete or arriving.
#[derive(Debug)]
pub struct Entry {
    pub size: u64,
    backing: Mutex<Backing>,
    progress: watch::Sender<Progress>,
}

impl Entry {
    pub(super) fn new(size: u64, backing: Backing) -> Entry {
        Entry {
            size,
            backing: Mutex::new(backing),
            progress: watch::Sender::new(Progress::Filling(0)),
        }
    }

    /// An entry holding bytes we already have (e.g. what we just uploaded).
    pub fn complete(data: Vec<u8>) -> Entry {
        let e = Entry::new(data.len() as u64, Backing::Memory(data));
        e.progress.send_replace(Progress::Done);
        e
    }

    /// A complete entry whose bytes are in `file` (staged bytes just confirmed).
    pub(super) fn complete_in(file: File, size: u64) -> Entry {
        let e = Entry::new(size, Backing::Disk(file));
        e.progress.send_replace(Progress::Done);
        e
    }

    pub fn is_done(&self) -> bool {
        *self.progress.borrow() == Progress::Done
    }

    pub fn failed(&self) -> bool {
        matches!(*self.progress.borrow(), Progress::Failed(_))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backing> {
        self.backing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, chunk: &[u8], at: u64) -> std::io::Result<()> {
        match &mut *self.lock() {
            Backing::Memory(v) => {
                v.extend_from_slice(chunk);
                Ok(())
            }
            Backing::Disk(f) => f.write_all_at(chunk, at),
        }
    }

    /// Drive a download stream into this entry. Never serves a body whose length
    /// disagrees with the listed size as complete.
    pub async fn fill(&self, mut stream: ByteStream) {
        let mut filled: u64 = 0;
        while let Some(item) = stream.next().await {
            let step = match item {
                Ok(chunk) if filled + chunk.len() as u64 > self.size => Err(RemoteError::Truncated {
                    got: filled + chunk.len() as u64,
                    expected: self.size,
                }),
                Ok(chunk) => self
                    .append(&chunk, filled)
                    .map(|()| chunk.len() as u64)
                    .map_err(|e| RemoteError::LocalIo(e.to_string())),
                Err(e) => Err(e),
            };
            match step {
                Ok(n) => {
                    filled += n;
                    self.progress.send_replace(Progress::Filling(filled));
                }
                Err(e) => {
                    self.progress.send_replace(Progress::Failed(e));
                    return;
                }
            }
        }
        let end = if filled == self.size {
            Progress::Done
        } else {
            Progress::Failed(RemoteError::Truncated {
                got: filled,
                expected: self.size,
            })
        };
        self.progress.send_replace(end);
    }

    /// Wait for the whole file (or the download's failure).
    pub async fn wait_complete(&self) -> CoreResult<()> {
        self.wait_for(self.size).await
    }

    /// The download could not start.
    pub fn fail(&self, e: RemoteError) {
        self.progress.send_replace(Progress::Failed(e));
    }

    /// Wait until `end` bytes are present (or the download ends), without holding locks.
    async fn wait_for(&self, end: u64) -> CoreResult<()> {
        let mut rx = self.progress.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Progress::Done => return Ok(()),
                Progress::Failed(e) => return Err(CoreError::from(e.clone())),
                Progress::Filling(n) if *n >= end => return Ok(()),
                Progress::Filling(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err(CoreError::Io("download abandoned".into()));
            }
        }
    }

    /// Read `len` bytes at `offset`, waiting only for those bytes to arrive.
    pub async fn read(&self, offset: u64, len: u32) -> CoreResult<Vec<u8>> {
        if offset >= self.size {
            return Ok(Vec::new());
        }
        let end = (offset + u64::from(len)).min(self.size);
        self.wait_for(end).await?;
        match &*self.lock() {
            Backing::Memory(v) => Ok(v[offset as usize..end as usize].to_vec()),
            Backing::Disk(f) => {
                let mut buf = vec![0u8; (end - offset) as usize];
                f.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            }
        }
    }

    /// The whole content, once complete, written to `dst` (used to stage an existing
    /// file for modification or rename): in bounded chunks, on the blocking pool.
    pub async fn copy_to(self: &Arc<Self>, dst: &File) -> CoreResult<()> {
        self.wait_complete().await?;
        let (me, dst) = (self.clone(), dst.try_clone()?);
        blocking(move || {
            me.each_chunk(|off, chunk| {
                dst.write_all_at(chunk, off)?;
                Ok(true)
            })
            .map(|_| ())
        })
        .await
    }

    /// Whether the whole content, once complete, equals the file at `path` byte for
    /// byte: compared in bounded chunks on the blocking pool, whatever the size.
    pub async fn same_as_file(self: &Arc<Self>, path: &std::path::Path) -> CoreResult<bool> {
        self.wait_complete().await?;
        let (me, local) = (self.clone(), File::open(path)?);
        blocking(move || {
            if local.metadata()?.len() != me.size {
                return Ok(false);
            }
            let mut theirs = Vec::new();
            me.each_chunk(|off, chunk| {
                theirs.resize(chunk.len(), 0);
                local.read_exact_at(&mut theirs, off)?;
                Ok(theirs == chunk)
            })
        })
        .await
    }

    /// Call `f(offset, chunk)` over a complete entry in chunks of at most 1 MiB while it
    /// answers true; false if it stopped early. Blocking (disk reads).
    fn each_chunk(&self, mut f: impl FnMut(u64, &[u8]) -> CoreResult<bool>) -> CoreResult<bool> {
        const CHUNK: u64 = 1 << 20;
        let mut buf = Vec::new();
        let mut off = 0u64;
        while off < self.size {
            let n = (self.size - off).min(CHUNK);
            let more = match &*self.lock() {
                Backing::Memory(v) => {
                    let (s, e) = (usize::try_from(off), usize::try_from(off + n));
                    match (s, e) {
                        (Ok(s), Ok(e)) if e <= v.len() => f(off, &v[s..e])?,
                        _ => return Err(CoreError::Io("cache entry shorter than its size".into())),
                    }
                }
                Backing::Disk(file) => {
                    buf.resize(n as usize, 0);
                    file.read_exact_at(&mut buf, off)?;
                    f(off, &buf)?
                }
            };
            if !more {
                return Ok(false);
            }
            off += n;
        }
        Ok(true)
    }
}
