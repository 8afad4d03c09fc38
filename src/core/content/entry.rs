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

/// Bytes of a download gathered before one write to the temp file: one 1 MiB write
/// costs the filesystem a fraction of what sixty-four 16 KiB writes do (measured in
/// docs/BENCHMARKS.md, "Issue 10, outcomes 3 and 4"), and a reader close behind the
/// download reads them from memory.
const WRITE_BATCH: usize = 1 << 20;

/// Where an entry's bytes are kept.
#[derive(Debug)]
pub(super) enum Backing {
    Memory(Vec<u8>),
    /// An already-unlinked temp file (freed when the last reader lets go) holding the
    /// first `written` bytes, and the bytes after them, not yet written, in `tail`.
    Disk {
        file: File,
        written: u64,
        tail: Vec<u8>,
    },
}

impl Backing {
    /// A temp file that already holds all `size` bytes.
    pub(super) fn disk(file: File, size: u64) -> Backing {
        Backing::Disk {
            file,
            written: size,
            tail: Vec::new(),
        }
    }

    /// A temp file still to be filled.
    pub(super) fn empty_disk(file: File) -> Backing {
        Backing::Disk {
            file,
            written: 0,
            tail: Vec::with_capacity(WRITE_BATCH),
        }
    }

    fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Backing::Memory(v) => v.extend_from_slice(chunk),
            Backing::Disk { tail, .. } => {
                tail.extend_from_slice(chunk);
                if tail.len() >= WRITE_BATCH {
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    /// Write what the tail holds to the temp file.
    fn flush(&mut self) -> std::io::Result<()> {
        if let Backing::Disk { file, written, tail } = self {
            if !tail.is_empty() {
                file.write_all_at(tail, *written)?;
                *written += tail.len() as u64;
                tail.clear();
            }
        }
        Ok(())
    }

    /// Fill `buf` with the bytes at `offset`; the caller has waited for all of them.
    fn read_into(&self, buf: &mut [u8], offset: u64) -> CoreResult<()> {
        let end = offset + buf.len() as u64;
        let short = || CoreError::Io("cache entry shorter than its size".into());
        match self {
            Backing::Memory(v) => {
                let (s, e) = (usize::try_from(offset), usize::try_from(end));
                match (s, e) {
                    (Ok(s), Ok(e)) if e <= v.len() => buf.copy_from_slice(&v[s..e]),
                    _ => return Err(short()),
                }
            }
            Backing::Disk { file, written, tail } => {
                // Bytes before `written` are in the file, the rest in the tail.
                let split = end.min(*written).max(offset);
                let (from_file, from_tail) = buf.split_at_mut((split - offset) as usize);
                if !from_file.is_empty() {
                    file.read_exact_at(from_file, offset)?;
                }
                if !from_tail.is_empty() {
                    let at = usize::try_from(split - *written).map_err(|_| short())?;
                    let part = tail.get(at..at + from_tail.len()).ok_or_else(short)?;
                    from_tail.copy_from_slice(part);
                }
            }
        }
        Ok(())
    }
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
        let e = Entry::new(size, Backing::disk(file, size));
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
                    .lock()
                    .append(&chunk)
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
            // Complete means complete on disk: copies and compares read the file.
            if let Err(e) = self.lock().flush() {
                self.progress
                    .send_replace(Progress::Failed(RemoteError::LocalIo(e.to_string())));
                return;
            }
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
        let mut buf = vec![0u8; (end - offset) as usize];
        self.lock().read_into(&mut buf, offset)?;
        Ok(buf)
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
            buf.resize(n as usize, 0);
            self.lock().read_into(&mut buf, off)?;
            if !f(off, &buf)? {
                return Ok(false);
            }
            off += n;
        }
        Ok(true)
    }
}
