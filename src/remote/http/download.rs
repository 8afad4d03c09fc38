//! A download's body as it streams in, checked against the listed size
//! ([`LengthCheck`]): longer or shorter than listed is an error, never silent.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::errors::network_error;
use super::{ByteStream, RemoteError};

/// The length check of a download: bytes so far against the listed size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthCheck {
    got: u64,
    expected: u64,
}

impl LengthCheck {
    pub fn new(expected: u64) -> LengthCheck {
        LengthCheck { got: 0, expected }
    }

    /// A chunk of `n` bytes arrived: an error once the body is longer than listed.
    pub fn feed(&mut self, n: usize) -> Result<(), RemoteError> {
        self.got = self.got.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        if self.got > self.expected {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// The body ended: an error unless it had exactly the listed length.
    pub fn finish(&self) -> Result<(), RemoteError> {
        if self.got != self.expected {
            return Err(self.truncated());
        }
        Ok(())
    }

    pub fn got(&self) -> u64 {
        self.got
    }

    fn truncated(&self) -> RemoteError {
        RemoteError::Truncated {
            got: self.got,
            expected: self.expected,
        }
    }
}

/// The body of a download as it arrives, checked against the listed size.
pub(super) fn checked_stream(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    expected: u64,
) -> ByteStream {
    struct St<S> {
        body: std::pin::Pin<Box<S>>,
        check: LengthCheck,
        done: bool,
    }
    let st = St {
        body: Box::pin(body),
        check: LengthCheck::new(expected),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        match st.body.next().await {
            Some(Ok(chunk)) => match st.check.feed(chunk.len()) {
                Ok(()) => Some((Ok(chunk), st)),
                Err(err) => {
                    st.done = true;
                    tracing::warn!("GET file: body longer than listed: {err}");
                    Some((Err(err), st))
                }
            },
            Some(Err(e)) => {
                st.done = true;
                let err = network_error(&e);
                tracing::warn!(
                    "GET file: body failed after {} of {expected} bytes: {err}",
                    st.check.got()
                );
                Some((Err(err), st))
            }
            None => match st.check.finish() {
                Ok(()) => None,
                Err(err) => {
                    st.done = true;
                    tracing::warn!("GET file: {err}");
                    Some((Err(err), st))
                }
            },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn length_check_accepts_exactly_the_listed_size(expected in any::<u64>(), chunks in proptest::collection::vec(any::<usize>(), 0..8)) {
            let mut c = LengthCheck::new(expected);
            let mut total: u128 = 0;
            let mut failed = false;
            for n in &chunks {
                total += *n as u128;
                if c.feed(*n).is_err() {
                    failed = true;
                    prop_assert!(total > expected as u128);
                    break;
                }
            }
            if !failed {
                prop_assert_eq!(c.finish().is_ok(), total == expected as u128);
            }
        }

        #[test]
        fn length_check_on_small_bodies(expected in 0u64..2000, chunks in proptest::collection::vec(0usize..700, 0..6)) {
            let mut c = LengthCheck::new(expected);
            let total: usize = chunks.iter().sum();
            let fed_ok = chunks.iter().all(|n| c.feed(*n).is_ok());
            prop_assert_eq!(fed_ok, total as u64 <= expected);
            if fed_ok {
                prop_assert_eq!(c.finish().is_ok(), total as u64 == expected);
            }
        }
    }
}
