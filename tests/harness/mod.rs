//! The core tier's shared harness: the options every core test mounts with (the
//! command line's defaults from `Options::new`, a smaller memory cache, the client list
//! trusted for an hour, a fixed listings key), in a temporary directory.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use intakeq_fs::core::Options;

/// Options for a core over `dir` (spool and cache inside it), as account `account`.
pub fn options(dir: &Path, account: &str) -> Options {
    Options {
        cache_bytes: 64 << 20,
        client_list_ttl: Duration::from_secs(3600),
        listings_key: [7; 32],
        ..Options::new(dir.join("spool"), dir.join("cache"), account)
    }
}
