//! A request body as it arrived, shared between node sends without copying.
//!
//! hyper hands a large body over as many `Bytes` chunks cut from its read
//! buffer. [`Payload`] keeps those chunks as they are (no concatenation) and
//! is cheap to clone: every node send gets the same chunks through a
//! [`PayloadBody`], and hyper writes them out with vectored I/O. Only a
//! consumer that needs one contiguous slice (the gzip size check, a parser)
//! walks the chunks.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// An immutable body made of one or more chunks.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    chunks: Chunks,
    len: u64,
}

#[derive(Debug, Clone, Default)]
enum Chunks {
    #[default]
    Empty,
    One(Bytes),
    Many(Arc<[Bytes]>),
}

impl Payload {
    /// A payload from the chunks of a body, in order; empty chunks are skipped.
    pub fn from_chunks(mut chunks: Vec<Bytes>) -> Payload {
        chunks.retain(|c| !c.is_empty());
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        let chunks = match chunks.len() {
            0 => Chunks::Empty,
            1 => Chunks::One(chunks.pop().unwrap_or_default()),
            _ => Chunks::Many(chunks.into()),
        };
        Payload { chunks, len }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks in order.
    pub fn chunks(&self) -> &[Bytes] {
        match &self.chunks {
            Chunks::Empty => &[],
            Chunks::One(one) => std::slice::from_ref(one),
            Chunks::Many(many) => many,
        }
    }

    /// One contiguous copy; only for callers that must see the whole body at once.
    pub fn to_contiguous(&self) -> Bytes {
        match &self.chunks {
            Chunks::Empty => Bytes::new(),
            Chunks::One(one) => one.clone(),
            Chunks::Many(many) => many.concat().into(),
        }
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Payload {
        Payload::from_chunks(vec![bytes])
    }
}

impl From<&'static str> for Payload {
    fn from(text: &'static str) -> Payload {
        Payload::from(Bytes::from_static(text.as_bytes()))
    }
}

/// A [`Payload`] being sent: yields its chunks as data frames, in order.
#[derive(Debug)]
pub struct PayloadBody {
    payload: Payload,
    next: usize,
}

impl PayloadBody {
    pub fn new(payload: Payload) -> PayloadBody {
        PayloadBody { payload, next: 0 }
    }
}

impl Body for PayloadBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = self.next;
        let chunk = self.payload.chunks().get(next).cloned();
        self.next += 1;
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.payload.chunks().len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_yields_all_chunks_in_order_with_exact_size() {
        let payload = Payload::from_chunks(vec![
            Bytes::from_static(b"cpu v=1\n"),
            Bytes::new(),
            Bytes::from_static(b"mem v=2\n"),
        ]);
        assert_eq!(payload.len(), 16);
        assert_eq!(payload.chunks().len(), 2);
        let body = PayloadBody::new(payload.clone());
        assert_eq!(body.size_hint().exact(), Some(16));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"cpu v=1\nmem v=2\n");
        assert_eq!(payload.to_contiguous(), collected);
    }

    #[test]
    fn single_chunk_is_shared_not_copied() {
        let bytes = Bytes::from(vec![b'x'; 1024]);
        let payload = Payload::from(bytes.clone());
        assert_eq!(payload.to_contiguous().as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn empty_payload_has_no_chunks() {
        let payload = Payload::from_chunks(vec![Bytes::new()]);
        assert!(payload.is_empty());
        assert!(PayloadBody::new(payload).is_end_stream());
    }
}
