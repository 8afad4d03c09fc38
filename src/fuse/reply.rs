//! What the kernel gets back: the one mapping from core errors to errno (no catch-all
//! arm), how failures are logged, attributes, open flags, names, and xattr replies.

use std::ffi::OsStr;

use fuser::{Errno, FileAttr, FileType, FopenFlags, INodeNo, ReplyXattr};

use crate::core::{Attr, CoreError, Kind};
use crate::owner::Owner;

/// The errno for each core error: the only place this mapping is made.
pub fn errno(e: &CoreError) -> Errno {
    match e {
        CoreError::NotFound => Errno::ENOENT,
        CoreError::Exists => Errno::EEXIST,
        CoreError::NotPermitted(_) => Errno::EPERM,
        CoreError::ReadOnly => Errno::EROFS,
        CoreError::CrossDevice => Errno::EXDEV,
        CoreError::IsDir => Errno::EISDIR,
        CoreError::NotDir => Errno::ENOTDIR,
        CoreError::Invalid(_) => Errno::EINVAL,
        CoreError::BadHandle => Errno::EBADF,
        CoreError::AccessDenied => Errno::EACCES,
        CoreError::Again(_) => Errno::EAGAIN,
        CoreError::Io(_) => Errno::EIO,
        CoreError::NameTooLong => Errno::ENAMETOOLONG,
        CoreError::Interrupted => Errno::EINTR,
        CoreError::PreviewsOff => Errno::EACCES,
    }
}

/// Log a failed operation: expected misses at debug, the rest at warn.
pub(super) fn log_err(op: &str, e: &CoreError) {
    match e {
        // A refused preview is what --no-previews asked for: pcmanfm alone opens each
        // image three times, so a warning each would bury the real ones.
        CoreError::NotFound | CoreError::Exists | CoreError::Interrupted | CoreError::PreviewsOff => {
            tracing::debug!("{op}: {e}")
        }
        CoreError::AccessDenied => {
            tracing::error!("{op}: the IntakeQ API key was rejected; check INTAKEQ_API_KEY or --api-key-file")
        }
        _ => tracing::warn!("{op}: {e}"),
    }
}

pub(super) fn file_attr(a: &Attr, owner: &Owner) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: owner.perm(a.kind == Kind::Dir, a.kind == Kind::Symlink, a.perm),
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: owner.uid,
        gid: owner.gid,
        rdev: 0,
        blksize: 1 << 20,
        flags: 0,
    }
}

pub(super) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

/// Reply to a getxattr/listxattr with `value`: its size when asked with 0, ERANGE when
/// it does not fit in `size`.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    match u32::try_from(value.len()) {
        Ok(n) if size == 0 => reply.size(n),
        Ok(n) if n <= size => reply.data(value),
        _ => reply.error(Errno::ERANGE),
    }
}

/// Open flags for a handle: write-only handles (`cp`, `tar`, `rsync`, shell redirects,
/// editors' saves) bypass the kernel's page cache. The bytes go straight from the
/// writer to the spool instead of also being copied into cached pages of a file whose
/// reads the daemon serves from its own staged bytes anyway: one copy and one page
/// allocation fewer per byte (docs/BENCHMARKS.md, "Write-only handles are direct").
/// A write-only handle cannot be read or mapped, so nothing it could cache is lost, and
/// the kernel drops the pages a direct write overwrote from the cache that readers'
/// handles share, so they see the new bytes (tests/programs.rs, coherence test).
pub(super) fn write_only_flags(access: i32) -> FopenFlags {
    if access & libc::O_ACCMODE == libc::O_WRONLY {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

pub(super) fn name_str(name: &OsStr) -> Result<&str, Errno> {
    // IntakeQ names are text; a name that is not UTF-8 cannot exist there.
    name.to_str().ok_or(Errno::ENOENT)
}
