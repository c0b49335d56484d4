//! The request body of a call that takes one message (every RPC of ours, streaming answers
//! included), checked as it streams through: gRPC's length-prefixed framing must hold exactly one
//! whole, uncompressed message. tonic would serve the first of two messages, and answer INTERNAL
//! for no message, a message cut short, or a compressed flag without `grpc-encoding`: all of them
//! the caller's doing, so here they are INVALID_ARGUMENT (the gRPC core docs suggest INTERNAL for
//! the compressed flag; our rule is that nothing a caller causes is INTERNAL).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// A body error.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes of a message's prefix: the compressed flag and the big-endian length.
const PREFIX: usize = 5;

/// Where the body is in its one message.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Reading the prefix; `have` bytes of it so far (into `prefix`).
    Prefix { have: usize, prefix: [u8; PREFIX] },
    /// Reading the message; `left` bytes to go.
    Message { left: u64 },
    /// The message is whole: nothing more may come.
    Whole,
}

/// A request body that fails with INVALID_ARGUMENT unless it is exactly one uncompressed
/// message; a body it does not check (`check` off) passes through as it is.
#[derive(Debug)]
pub struct OneMessage<B> {
    inner: B,
    check: bool,
    /// The caller named a compression (`grpc-encoding`); tonic answers for it.
    encoded: bool,
    position: Position,
    failed: bool,
}

impl<B> OneMessage<B> {
    /// Checks `inner` when `check`; `encoded` when the call sent `grpc-encoding`.
    pub fn new(inner: B, check: bool, encoded: bool) -> OneMessage<B> {
        OneMessage { inner, check, encoded, position: Position::Prefix { have: 0, prefix: [0; PREFIX] }, failed: false }
    }

    /// Follows `data` through the framing; the refusal when it breaks it.
    fn follow(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            match &mut self.position {
                Position::Prefix { have, prefix } => {
                    let take = (PREFIX - *have).min(data.len());
                    prefix[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have == PREFIX {
                        match prefix[0] {
                            0 => {}
                            1 if self.encoded => {}
                            1 => {
                                return Err(refusal(
                                    "the message is flagged compressed but the call names no grpc-encoding",
                                ));
                            }
                            flag => {
                                return Err(refusal(&format!(
                                    "the message's compressed flag is {flag}; it must be 0 or 1"
                                )));
                            }
                        }
                        let left = u64::from(u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]));
                        self.position = if left == 0 { Position::Whole } else { Position::Message { left } };
                    }
                }
                Position::Message { left } => {
                    let take = u64::try_from(data.len()).unwrap_or(u64::MAX).min(*left);
                    *left -= take;
                    data = &data[usize::try_from(take).unwrap_or(data.len())..];
                    if *left == 0 {
                        self.position = Position::Whole;
                    }
                }
                Position::Whole => return Err(refusal("a call takes one request message; the body holds more")),
            }
        }
        Ok(())
    }

    /// The refusal, if the body ends where it does now.
    fn end(&self) -> Result<(), tonic::Status> {
        match self.position {
            Position::Whole => Ok(()),
            Position::Prefix { have: 0, .. } => Err(refusal("a call takes one request message; the body holds none")),
            Position::Prefix { .. } => Err(refusal("the body ends inside a message's length prefix")),
            Position::Message { left } => {
                Err(refusal(&format!("the body ends {left} bytes before the message its prefix announces")))
            }
        }
    }
}

fn refusal(message: &str) -> tonic::Status {
    crate::grpc::error_status(
        Code::InvalidArgument,
        "MALFORMED_REQUEST",
        format!("body: {message}"),
        &[("field", "body".to_owned())],
    )
}

impl<B> Body for OneMessage<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => {
                if this.check
                    && let Err(refused) = this.end()
                {
                    this.failed = true;
                    return Poll::Ready(Some(Err(refused.into())));
                }
                return Poll::Ready(None);
            }
        };
        if this.check
            && let Some(data) = frame.data_ref()
            && let Err(refused) = this.follow(data.chunk())
        {
            this.failed = true;
            return Poll::Ready(Some(Err(refused.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // The end must be polled to be checked.
        !self.check && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn followed(chunks: &[&[u8]]) -> Result<(), tonic::Status> {
        let mut body = OneMessage::new((), true, false);
        for chunk in chunks {
            body.follow(chunk)?;
        }
        body.end()
    }

    #[test]
    fn one_whole_message_in_any_chunking_passes_and_anything_else_is_refused() {
        assert!(followed(&[&[0, 0, 0, 0, 2, 8, 1]]).is_ok());
        assert!(followed(&[&[0, 0], &[0, 0, 2, 8], &[1]]).is_ok());
        assert!(followed(&[&[0, 0, 0, 0, 0]]).is_ok(), "an empty message is one message");
        let refused = |chunks: &[&[u8]], says: &str| {
            let status = followed(chunks).expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains(says), "{}", status.message());
        };
        refused(&[], "holds none");
        refused(&[&[0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0, 0]], "holds more");
        refused(&[&[0, 0, 0, 0, 2, 8, 1], &[0]], "holds more");
        refused(&[&[0, 0, 0]], "inside a message's length prefix");
        refused(&[&[0, 0, 0, 0, 9, 8]], "8 bytes before");
        refused(&[&[1, 0, 0, 0, 1, 8]], "no grpc-encoding");
        refused(&[&[7, 0, 0, 0, 1, 8]], "compressed flag is 7");
        let mut encoded = OneMessage::new((), true, true);
        assert!(encoded.follow(&[1, 0, 0, 0, 1, 8]).is_ok(), "tonic answers for a named encoding");
    }
}
