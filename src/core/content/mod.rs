//! The content cache: file bytes by file id, filled by one background download per
//! file (single flight) that readers wait on only as far as the bytes they asked
//! for. Small files live in memory under an LRU bounded by `--cache-size`; files too
//! big for that stream through an unlinked temp file in the private cache directory,
//! so memory stays bounded whatever the file size. A file id's bytes never change
//! (the API has no overwrite), so a complete entry is valid for as long as it is kept.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use lru::LruCache;

use super::error::CoreResult;

mod entry;
use entry::Backing;
pub use entry::Entry;

/// The cache proper.
#[derive(Debug)]
pub struct ContentCache {
    budget: u64,
    used: u64,
    disk_budget: u64,
    disk_used: u64,
    dir: PathBuf,
    lru: LruCache<String, Arc<Entry>>,
}

impl ContentCache {
    /// `budget`: bytes of memory for cached content; `dir`: private (0700) directory
    /// for the temp files of files too large for memory.
    /// `disk_budget`: bytes of temp files kept for reuse once their readers are gone.
    pub fn new(budget: u64, disk_budget: u64, dir: PathBuf) -> ContentCache {
        ContentCache {
            budget,
            used: 0,
            disk_budget,
            disk_used: 0,
            dir,
            lru: LruCache::unbounded(),
        }
    }

    /// Largest file kept in memory: a quarter of the budget, so one big file does
    /// not flush everything else.
    fn fits_memory(&self, size: u64) -> bool {
        size <= self.budget / 4
    }

    /// The entry for a file if one is cached and not failed.
    pub fn get(&mut self, id: &str) -> Option<Arc<Entry>> {
        match self.lru.get(id) {
            Some(e) if !e.failed() => Some(e.clone()),
            Some(_) => {
                self.remove(id);
                None
            }
            None => None,
        }
    }

    /// A new, empty entry for `id` that the caller must fill. It is cached at once so
    /// concurrent readers share the download.
    pub fn start(&mut self, id: &str, size: u64) -> CoreResult<Arc<Entry>> {
        let backing = if self.fits_memory(size) {
            Backing::Memory(Vec::with_capacity(size as usize))
        } else {
            Backing::empty_disk(self.temp_file(size)?)
        };
        let entry = Arc::new(Entry::new(size, backing));
        self.insert(id, entry.clone());
        Ok(entry)
    }

    /// Cache a file's bytes that we hold in an open file (staged bytes just confirmed
    /// as this file): the entry reads them from it, nothing is copied.
    pub fn put_file(&mut self, id: &str, file: File, size: u64) {
        self.insert(id, Arc::new(Entry::complete_in(file, size)));
    }

    /// Cache bytes we already hold (what was just uploaded), if they fit in memory.
    pub fn put_complete(&mut self, id: &str, data: Vec<u8>) {
        if self.fits_memory(data.len() as u64) {
            self.insert(id, Arc::new(Entry::complete(data)));
        }
    }

    fn insert(&mut self, id: &str, entry: Arc<Entry>) {
        self.remove(id);
        if self.fits_memory(entry.size) {
            self.used += entry.size;
        } else {
            self.disk_used += entry.size;
        }
        self.lru.put(id.to_string(), entry);
        // Evict least recently used entries of the kind that is over budget. An evicted
        // entry only leaves the index: open handles keep reading it until closed.
        for in_memory in [true, false] {
            let over = |c: &Self| {
                if in_memory {
                    c.used > c.budget
                } else {
                    c.disk_used > c.disk_budget
                }
            };
            while over(self) {
                let victim = self
                    .lru
                    .iter()
                    .rev()
                    .find(|(_, e)| self.fits_memory(e.size) == in_memory)
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(k) => self.remove(&k),
                    None => break,
                }
            }
        }
    }

    /// The same bytes under a new file id (a rename re-uploaded them): the entry moves,
    /// nothing is copied. Only a complete entry moves; anything else is dropped.
    pub fn rekey(&mut self, old: &str, new: &str) {
        if let Some(e) = self.lru.pop(old) {
            self.account_removed(&e);
            if e.is_done() {
                self.insert(new, e);
            }
        }
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(e) = self.lru.pop(id) {
            self.account_removed(&e);
        }
    }

    fn account_removed(&mut self, e: &Entry) {
        if self.fits_memory(e.size) {
            self.used = self.used.saturating_sub(e.size);
        } else {
            self.disk_used = self.disk_used.saturating_sub(e.size);
        }
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    fn temp_file(&self, size: u64) -> CoreResult<File> {
        std::fs::create_dir_all(&self.dir)?;
        // Named briefly, unlinked at once: the bytes vanish with the last handle,
        // including at exit or crash.
        let path = self.dir.join(format!("dl-{}-{}", std::process::id(), next_seq()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&path)?;
        std::fs::remove_file(&path)?;
        preallocate(&f, size)?;
        Ok(f)
    }
}

/// Reserve a temp file's blocks before the download fills it: writes into reserved
/// blocks skip the filesystem's per-write allocation (about half the cost of the write
/// on ext4, docs/BENCHMARKS.md "Issue 10, outcomes 3 and 4"), and a disk too full for
/// the file fails here, before any call is spent. Filesystems without `fallocate` just
/// go on.
fn preallocate(f: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(size) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => Ok(()),
        _ => Err(err),
    }
}

fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// `OpenOptions::mode(0o600)` by a name that reads well at call sites.
pub trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteError;
    use std::os::unix::fs::FileExt;

    fn filled(cache: &mut ContentCache, id: &str, size: usize) -> Arc<Entry> {
        let e = cache.start(id, size as u64).unwrap();
        let body = bytes::Bytes::from(vec![1u8; size]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(e.fill(Box::pin(futures_util::stream::iter([Ok(body)]))));
        e
    }

    #[test]
    fn memory_budget_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(400, 0, dir.path().to_path_buf());
        filled(&mut c, "a", 100);
        filled(&mut c, "b", 100);
        filled(&mut c, "c", 100);
        assert!(c.get("a").is_some()); // a is now most recent
        filled(&mut c, "d", 100);
        filled(&mut c, "e", 100);
        assert!(c.used() <= 400);
        assert!(c.get("a").is_some());
        assert!(c.get("b").is_none(), "b was least recently used");
    }

    #[test]
    fn large_files_go_to_disk_within_the_disk_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(400, 1000, dir.path().to_path_buf());
        let big = filled(&mut c, "big1", 600);
        assert_eq!(c.used(), 0, "not in memory");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(big.read(590, 100)).unwrap(), vec![1u8; 10]);
        filled(&mut c, "big2", 600);
        assert!(c.get("big1").is_none(), "evicted: disk budget is 1000");
        assert_eq!(
            rt.block_on(big.read(0, 4)).unwrap(),
            vec![1u8; 4],
            "a holder keeps reading"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp files are unlinked"
        );
    }

    #[test]
    fn a_body_of_the_wrong_length_never_completes() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(1000, 0, dir.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let short = c.start("s", 10).unwrap();
        rt.block_on(
            short.fill(Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
                b"12345",
            ))]))),
        );
        assert!(short.failed());
        assert!(rt.block_on(short.read(0, 10)).is_err());
        let long = c.start("l", 3).unwrap();
        rt.block_on(
            long.fill(Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
                b"12345",
            ))]))),
        );
        assert!(long.failed());
    }

    /// A disk entry read while its download is under way: every range, whether in the
    /// file, still in memory or across the two, reads the bytes that were sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disk_entry_reads_the_right_bytes_from_file_and_memory_while_filling() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(0, 1 << 30, dir.path().to_path_buf());
        let size: usize = 11 * (1 << 20) + 12345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4093) as u8).collect();
        let e = c.start("big", size as u64).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, RemoteError>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        let filler = {
            let e = e.clone();
            tokio::spawn(async move { e.fill(Box::pin(stream)).await })
        };
        // Odd chunk sizes, so batches and reads never line up with chunk edges.
        let mut sent = 0;
        for (n, len) in [1usize, 70_001, 3 << 20, 999_999, 5 << 20, 4096]
            .iter()
            .cycle()
            .enumerate()
        {
            let end = (sent + len).min(size);
            tx.send(Ok(bytes::Bytes::copy_from_slice(&data[sent..end])))
                .await
                .unwrap();
            sent = end;
            // Read back everything sent so far, in odd-sized pieces, as it arrives.
            if n % 2 == 1 {
                let mut off = 0;
                while off < sent {
                    let want = (sent - off).min(777_777);
                    let got = e.read(off as u64, want as u32).await.unwrap();
                    assert_eq!(got, &data[off..off + want], "at {off} after {sent} bytes");
                    off += want;
                }
            }
            if sent == size {
                break;
            }
        }
        drop(tx);
        filler.await.unwrap();
        assert!(e.is_done());
        assert_eq!(e.read(0, size as u32).await.unwrap(), data);
        // Complete means on disk: a copy reads the whole file.
        let out = tempfile::tempfile_in(dir.path()).unwrap();
        e.copy_to(&out).await.unwrap();
        let mut back = vec![0u8; size];
        out.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
    }

    /// A file the cache's disk cannot hold fails when its entry starts (before any
    /// download is asked for), and nothing is cached for it.
    #[test]
    fn a_file_too_big_for_the_disk_fails_before_its_download() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(0, u64::MAX, dir.path().to_path_buf());
        assert!(c.start("huge", 1 << 60).is_err());
        assert!(c.get("huge").is_none());
        assert!(c.start("fits", 1 << 20).is_ok());
    }

    /// A complete entry over a sparse temp file of `size` bytes with `mark` at `at`:
    /// files of 4 GiB and more without writing 4 GiB.
    fn sparse_entry(dir: &std::path::Path, size: u64, at: u64, mark: &[u8]) -> Arc<Entry> {
        let f = tempfile::tempfile_in(dir).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(mark, at).unwrap();
        Arc::new(Entry::complete_in(f, size))
    }

    fn sparse_file(dir: &std::path::Path, size: u64, at: u64, mark: &[u8]) -> PathBuf {
        let p = dir.join(format!("local-{}", next_seq()));
        let f = File::create(&p).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(mark, at).unwrap();
        p
    }

    const OVER_4_GIB: u64 = (4 << 30) + 4096;

    #[test]
    fn entries_of_4_gib_and_more_are_compared_to_the_last_byte() {
        let dir = tempfile::tempdir().unwrap();
        let at = OVER_4_GIB - 8;
        let e = sparse_entry(dir.path(), OVER_4_GIB, at, b"tail");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let same = sparse_file(dir.path(), OVER_4_GIB, at, b"tail");
        assert!(rt.block_on(e.same_as_file(&same)).unwrap());
        let shorter = sparse_file(dir.path(), OVER_4_GIB - 1, 0, b"");
        assert!(!rt.block_on(e.same_as_file(&shorter)).unwrap());
    }

    #[test]
    fn a_difference_in_the_last_chunk_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let size = (3 << 20) + 8;
        let e = sparse_entry(dir.path(), size, size - 4, b"tail");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let differs = sparse_file(dir.path(), size, size - 4, b"TAIL");
        assert!(!rt.block_on(e.same_as_file(&differs)).unwrap());
        let same = sparse_file(dir.path(), size, size - 4, b"tail");
        assert!(rt.block_on(e.same_as_file(&same)).unwrap());
    }

    #[test]
    fn rekeying_moves_an_entry_of_4_gib_and_more_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = ContentCache::new(400, 16 << 30, dir.path().to_path_buf());
        c.insert("old", sparse_entry(dir.path(), OVER_4_GIB, OVER_4_GIB - 4, b"end!"));
        c.rekey("old", "new");
        assert!(c.get("old").is_none());
        let moved = c.get("new").unwrap();
        assert_eq!(moved.size, OVER_4_GIB);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(moved.read(OVER_4_GIB - 4, 100)).unwrap(), b"end!");
    }

    #[test]
    fn copy_to_writes_the_whole_entry_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let size = (3 << 20) + 5;
        let e = sparse_entry(dir.path(), size, size - 5, b"last5");
        let dst = tempfile::tempfile_in(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(e.copy_to(&dst)).unwrap();
        assert_eq!(dst.metadata().unwrap().len(), size);
        let mut tail = [0u8; 5];
        dst.read_exact_at(&mut tail, size - 5).unwrap();
        assert_eq!(&tail, b"last5");
    }
}
