//! The core layer's error type, and the one place remote errors become core errors.
//! The FUSE adapter maps each `CoreError` to an errno (in `fuse/reply.rs`, once).

use crate::remote::RemoteError;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("read-only mount")]
    ReadOnly,
    #[error("cross-device rename (copy and delete instead)")]
    CrossDevice,
    #[error("is a directory")]
    IsDir,
    #[error("not a directory")]
    NotDir,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("bad file handle")]
    BadHandle,
    #[error("the API key was rejected")]
    AccessDenied,
    #[error("try again later: {0}")]
    Again(String),
    #[error("I/O error: {0}")]
    Io(String),
    #[error("name too long")]
    NameTooLong,
    #[error("interrupted: the caller is gone")]
    Interrupted,
    #[error("previews are switched off (--no-previews)")]
    PreviewsOff,
}

impl From<RemoteError> for CoreError {
    fn from(e: RemoteError) -> CoreError {
        match e {
            RemoteError::NotFound => CoreError::NotFound,
            RemoteError::Unauthorized { .. } => CoreError::AccessDenied,
            RemoteError::WouldWait { .. } | RemoteError::RateLimited => CoreError::Again(e.to_string()),
            RemoteError::Rejected { .. }
            | RemoteError::Server { .. }
            | RemoteError::Network(_)
            | RemoteError::Truncated { .. }
            | RemoteError::Protocol(_)
            | RemoteError::LocalIo(_) => CoreError::Io(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CoreError {
    fn from(e: std::io::Error) -> CoreError {
        CoreError::Io(format!("local: {e}"))
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
