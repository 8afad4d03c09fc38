//! The FUSE adapter: turns fuser callbacks into calls on the filesystem core and the
//! core's answers into replies. Anything that may touch the network runs as a tokio
//! task that replies when done, so no session thread ever waits on the network. The
//! one mapping from core errors to errno is `reply.rs`'s.

mod caller;
mod reply;

pub use self::reply::errno;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::Instrument;

use self::caller::{reader_of, unless_killed};
use self::reply::{file_attr, file_type, log_err, name_str, reply_xattr, write_only_flags};
use crate::core::xattr::XATTR_PREFIX;
use crate::core::{Attr, Core, CoreError, Kind, OpenMode, Reader};
use crate::owner::Owner;
use crate::remote::Remote;

pub struct FuseFs<R: Remote> {
    core: Arc<Core<R>>,
    rt: tokio::runtime::Handle,
    ttl: Duration,
    owner: Owner,
    /// Set once the session exists: tells the kernel to drop what it cached of an inode
    /// the mount changed behind its back.
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl<R: Remote> FuseFs<R> {
    pub fn new(core: Arc<Core<R>>, rt: tokio::runtime::Handle, ttl: Duration, owner: Owner) -> FuseFs<R> {
        FuseFs {
            core,
            rt,
            ttl,
            owner,
            notifier: Arc::default(),
        }
    }

    /// Where `mount.rs` puts the session's notifier once the session exists.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    fn file_attr(&self, a: &Attr) -> FileAttr {
        file_attr(a, &self.owner)
    }

    /// Run `fut` on the runtime inside the operation's span, on behalf of user `uid`
    /// (the caller: what it uploads, deletes or reads is audited under their name).
    fn spawn<F>(&self, uid: u32, span: tracing::Span, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(crate::audit::acting_for(Some(uid), fut).instrument(span));
    }
}

impl<R: Remote> Filesystem for FuseFs<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open(), so an overwrite never downloads the old bytes.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Attributes travel with directory entries: `ls -l` and `find` need no lookups.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        // A preview's handle reads past the page cache (`Opened::direct`); a previewer
        // that maps the file shared still may (kernel 6.6 and later: older kernels
        // refuse the flag and such a map fails with ENODEV, a preview missed).
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        let pending = self.core.pending_uploads();
        if pending > 0 {
            tracing::warn!("{pending} upload(s) did not complete; their data stays in the spool for the next mount");
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let pid = req.pid();
        let span = tracing::debug_span!("lookup", parent = parent.0, name = ?name);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        let (core, ttl, owner) = (self.core.clone(), self.ttl, self.owner);
        self.spawn(req.uid(), span, async move {
            let browser = caller::browser_of(pid);
            match unless_killed(pid, core.lookup_by(parent.0, &name, browser)).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a, &owner), Generation(0)),
                Err(CoreError::NotFound) => {
                    // A negative entry: the kernel remembers the miss for the TTL.
                    let mut neg = file_attr(
                        &Attr {
                            ino: 0,
                            kind: Kind::File,
                            size: 0,
                            mtime: SystemTime::UNIX_EPOCH,
                            perm: 0,
                        },
                        &owner,
                    );
                    neg.ino = INodeNo(0);
                    tracing::debug!("lookup: no such entry");
                    reply.entry(&ttl, &neg, Generation(0))
                }
                Err(e) => {
                    log_err("lookup", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _s = tracing::debug_span!("getattr", ino = ino.0).entered();
        match self.core.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl, &self.file_attr(&a)),
            Err(e) => {
                log_err("getattr", &e);
                reply.error(errno(&e))
            }
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let span = tracing::debug_span!("setattr", ino = ino.0, ?size);
        if let Some(m) = mtime {
            self.core.set_mtime(
                ino.0,
                match m {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                },
            );
        }
        let (core, ttl, owner) = (self.core.clone(), self.ttl, self.owner);
        self.spawn(req.uid(), span, async move {
            match core.setattr(ino.0, fh.map(|f| f.0), size).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a, &owner)),
                Err(e) => {
                    log_err("setattr", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let _s = tracing::debug_span!("mkdir", name = ?name).entered();
        tracing::info!("mkdir refused: the IntakeQ API cannot create folders");
        reply.error(self.refusal());
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = tracing::debug_span!("rmdir", name = ?name).entered();
        tracing::info!("rmdir refused: the IntakeQ API cannot delete folders");
        reply.error(self.refusal());
    }

    fn symlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _target: &std::path::Path, reply: ReplyEntry) {
        reply.error(self.refusal());
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(self.refusal());
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(self.refusal());
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let span = tracing::debug_span!("unlink", parent = parent.0, name = ?name);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(e),
        };
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            match core.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    log_err("unlink", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let span = tracing::debug_span!("rename", parent = parent.0, name = ?name, newparent = newparent.0, newname = ?newname);
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a.to_string(), b.to_string()),
            _ => return reply.error(Errno::ENOENT),
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            match core.rename(parent.0, &name, newparent.0, &newname, no_replace).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    log_err("rename", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let pid = req.pid();
        let span = tracing::debug_span!("open", ino = ino.0, flags = flags.0);
        let acc = flags.0 & libc::O_ACCMODE;
        let mode = OpenMode {
            write: acc != libc::O_RDONLY,
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            // Who reads decides the download's priority (reading /proc: off the session thread).
            let process = caller::process_of(pid);
            let reader = if mode.write {
                Reader::User
            } else {
                reader_of(process, pid, flags.0)
            };
            tracing::debug!(?reader, "open by");
            match unless_killed(pid, core.open_for_by(ino.0, mode, reader, process)).await {
                Ok(o) => {
                    if mode.write {
                        core.opened_by(o.fh, process);
                    }
                    let mut f = write_only_flags(acc);
                    if o.keep_cache {
                        f |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    if o.direct {
                        f |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    reply.opened(FileHandle(o.fh), f)
                }
                Err(e) => {
                    log_err("open", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let span = tracing::debug_span!("read", ino = ino.0, offset, size);
        let core = self.core.clone();
        let pid = req.pid();
        self.spawn(req.uid(), span, async move {
            match unless_killed(pid, core.read(fh.0, offset, size)).await {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    log_err("read", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let span = tracing::debug_span!("write", ino = ino.0, offset, len = data.len());
        let written = {
            let _s = span.enter();
            self.core.try_write(fh.0, offset, data)
        };
        let reply_with = |r: Result<u32, CoreError>, reply: ReplyWrite| match r {
            Ok(n) => reply.written(n),
            Err(e) => {
                log_err("write", &e);
                reply.error(errno(&e))
            }
        };
        match written {
            Some(r) => reply_with(r, reply),
            // The first partial write of a file opened without O_TRUNC: its current bytes
            // are fetched first, off the session thread.
            None => {
                let (core, data) = (self.core.clone(), data.to_vec());
                self.spawn(req.uid(), span, async move {
                    reply_with(core.write(fh.0, offset, &data).await, reply)
                });
            }
        }
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let pid = req.pid();
        let span = tracing::debug_span!("flush", ino = ino.0);
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            // Which process closes decides whether this close uploads (`Core::flush_by`).
            match core.flush_by(fh.0, caller::process_of(pid)).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    log_err("flush (upload)", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let span = tracing::debug_span!("fsync", ino = ino.0);
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            match core.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    log_err("fsync (upload)", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _s = tracing::debug_span!("release", ino = ino.0).entered();
        let reverted = self.core.release(fh.0);
        reply.ok();
        if reverted {
            // Its size went back to the server's: the kernel's cached size (0) must go.
            if let Some(n) = self.notifier.get().cloned() {
                self.rt.spawn_blocking(move || {
                    if let Err(e) = n.inval_inode(ino, 0, -1) {
                        tracing::debug!("invalidating a reverted file's attributes: {e}");
                    }
                });
            }
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _s = tracing::debug_span!("readlink", ino = ino.0).entered();
        match self.core.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => {
                log_err("readlink", &e);
                reply.error(errno(&e))
            }
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let pid = req.pid();
        let span = tracing::debug_span!("opendir", ino = ino.0);
        let core = self.core.clone();
        self.spawn(req.uid(), span, async move {
            let browser = caller::browser_of(pid);
            match unless_killed(pid, core.opendir_by(ino.0, browser)).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => {
                    log_err("opendir", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let _s = tracing::debug_span!("readdir", ino = ino.0, offset).entered();
        match self.core.readdir(fh.0, offset) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let kind = file_type(e.attr.kind);
                    if reply.add(INodeNo(e.attr.ino), offset + i as u64 + 1, kind, &e.name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => {
                log_err("readdir", &e);
                reply.error(errno(&e))
            }
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let _s = tracing::debug_span!("readdirplus", ino = ino.0, offset).entered();
        match self.core.readdir(fh.0, offset) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let attr = self.file_attr(&e.attr);
                    if reply.add(
                        INodeNo(e.attr.ino),
                        offset + i as u64 + 1,
                        &e.name,
                        &self.ttl,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => {
                log_err("readdirplus", &e);
                reply.error(errno(&e))
            }
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.core.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _s = tracing::debug_span!("getxattr", ino = ino.0, name = ?name).entered();
        // The kernel asks for security.capability before writes: answer at once.
        let Some(name) = name.to_str().filter(|n| n.starts_with(XATTR_PREFIX)) else {
            return reply.error(Errno::ENODATA);
        };
        match self.core.xattrs(ino.0) {
            Ok(attrs) => match attrs.iter().find(|(k, _)| k == name) {
                Some((_, v)) => reply_xattr(reply, size, v),
                None => reply.error(Errno::ENODATA),
            },
            Err(e) => {
                log_err("getxattr", &e);
                reply.error(errno(&e))
            }
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _s = tracing::debug_span!("listxattr", ino = ino.0).entered();
        match self.core.xattrs(ino.0) {
            Ok(attrs) => {
                let mut names = Vec::new();
                for (k, _) in &attrs {
                    names.extend_from_slice(k.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names)
            }
            Err(e) => {
                log_err("listxattr", &e);
                reply.error(errno(&e))
            }
        }
    }

    /// Attributes are IntakeQ's metadata, which the API cannot change: ENOTSUP, which
    /// `cp -a` and file managers take as "this file system keeps no attributes" and go
    /// on (EPERM would make `cp -a` into the mount fail). docs/SEMANTICS.md.
    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _s = tracing::debug_span!("setxattr", ino = ino.0, name = ?name).entered();
        tracing::debug!("setxattr refused: attributes are read-only IntakeQ metadata");
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = tracing::debug_span!("removexattr", ino = ino.0, name = ?name).entered();
        tracing::debug!("removexattr refused: attributes are read-only IntakeQ metadata");
        reply.error(Errno::ENOTSUP);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let pid = req.pid();
        let span = tracing::debug_span!("create", parent = parent.0, name = ?name);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(_) => return reply.error(Errno::EINVAL),
        };
        let (core, ttl, owner) = (self.core.clone(), self.ttl, self.owner);
        self.spawn(req.uid(), span, async move {
            match core.create(parent.0, &name).await {
                Ok((a, o)) => {
                    core.opened_by(o.fh, caller::process_of(pid));
                    reply.created(
                        &ttl,
                        &file_attr(&a, &owner),
                        Generation(0),
                        FileHandle(o.fh),
                        write_only_flags(flags),
                    )
                }
                Err(e) => {
                    log_err("create", &e);
                    reply.error(errno(&e))
                }
            }
        });
    }
}

impl<R: Remote> FuseFs<R> {
    /// The errno for operations the API cannot express.
    fn refusal(&self) -> Errno {
        if self.core.options().read_only {
            errno(&CoreError::ReadOnly)
        } else {
            errno(&CoreError::NotPermitted("no such API call"))
        }
    }
}
