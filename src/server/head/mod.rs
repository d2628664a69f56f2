//! Request heads that hyper cannot take but InfluxDB does: up to 1 MiB of
//! header (Go's limit), any number of headers, and request targets longer
//! than 64 KiB (a `GET /query` with a 200 KB `q`).
//!
//! hyper reads a head into its connection read buffer, which the router
//! keeps at 64 KiB so that large bodies are held in 64 KiB blocks (see
//! `READ_BUFFER_MAX`); it takes at most 100 headers without allocating per
//! request; and neither it nor the `http` crate can hold a URI over 64 KiB.
//! Rather than give up any of that for every request, [`Filtered`] sits
//! between the connection and hyper and follows the requests in the byte
//! stream ([`framing`]):
//!
//! * a head that hyper can take passes untouched, in place: no copy, one
//!   `httparse` pass over it;
//! * a head that is larger than 48 KiB or has more than 100 headers is
//!   parsed here (the same `httparse`), kept in the connection's [`Stash`],
//!   and hyper gets a stand-in: `METHOD /?influxdb-router-head=N HTTP/1.x`
//!   with the headers that frame the body (`Content-Length`,
//!   `Transfer-Encoding`, `Connection`, `Expect`), so the body still
//!   streams through hyper. The handler puts the real head back
//!   ([`restore`]) before dispatching; a query string too long for a URI
//!   travels as a [`LongQuery`] request extension;
//! * a head over [`MAX_HEAD`] (1 MiB + 4 KiB) passes as it is, and hyper
//!   answers 431.
//!
//! Bytes are held back only while a head is incomplete at the end of a read
//! (it may turn out too large); the bodies are never looked at beyond their
//! framing. Whatever hyper would refuse makes the framer stop following the
//! stream, and hyper answers as it would have.

mod framing;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::ApiError;
pub use framing::MAX_HEAD;
use framing::{Framer, Step};

/// The query parameter of a stand-in head that names its stashed head.
const MARKER: &str = "influxdb-router-head";

/// The longest request target an `http::Uri` holds.
const MAX_URI: usize = u16::MAX as usize - 1;

/// How many replaced heads a connection keeps until their handler asks
/// (hyper handles one request of a connection at a time; a pipelining
/// client may be a few ahead).
const STASH_MAX: usize = 4;

/// A request head that hyper got as a stand-in.
#[derive(Debug)]
pub struct Stashed {
    method: Method,
    target: String,
    version: Version,
    headers: HeaderMap,
}

/// The replaced heads of one connection, by their stand-in's number.
#[derive(Debug, Default)]
pub struct Stash {
    heads: Mutex<VecDeque<(u64, Stashed)>>,
}

impl Stash {
    fn put(&self, id: u64, head: Stashed) {
        if let Ok(mut heads) = self.heads.lock() {
            if heads.len() == STASH_MAX {
                heads.pop_front();
            }
            heads.push_back((id, head));
        }
    }

    fn take(&self, id: u64) -> Option<Stashed> {
        let mut heads = self.heads.lock().ok()?;
        let index = heads.iter().position(|(i, _)| *i == id)?;
        heads.remove(index).map(|(_, head)| head)
    }
}

/// The query string of a request whose target was too long for a URI (the
/// URI then holds only the path).
#[derive(Debug, Clone)]
pub struct LongQuery(pub String);

/// A request's query string: its [`LongQuery`] if it has one, else its URI's.
pub fn query_of<'a>(uri: &'a Uri, extensions: &'a http::Extensions) -> Option<&'a str> {
    match extensions.get::<LongQuery>() {
        Some(long) => Some(&long.0),
        None => uri.query(),
    }
}

/// Puts back the head of a request that hyper got as a stand-in.
pub fn restore<B>(stash: &Stash, mut request: Request<B>) -> Result<Request<B>, ApiError> {
    let Some(id) = marker(request.uri()) else {
        return Ok(request);
    };
    let Some(head) = stash.take(id) else {
        return Ok(request);
    };
    *request.method_mut() = head.method;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    let target = head.target;
    if target.len() <= MAX_URI {
        *request.uri_mut() = parse_uri(&target)?;
        return Ok(request);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path.len() > MAX_URI {
        return Err(ApiError::UriTooLong(path.len()));
    }
    *request.uri_mut() = parse_uri(path)?;
    request
        .extensions_mut()
        .insert(LongQuery(query.to_string()));
    Ok(request)
}

fn parse_uri(target: &str) -> Result<Uri, ApiError> {
    target.parse().map_err(|e| {
        let shown = crate::protocol::response::truncate(target, 100);
        ApiError::BadRequest(format!("invalid request target {shown:?}: {e}"))
    })
}

/// The number in a stand-in's target, `/?influxdb-router-head=N`.
fn marker(uri: &Uri) -> Option<u64> {
    if uri.path() != "/" {
        return None;
    }
    let (key, id) = uri.query()?.split_once('=')?;
    (key == MARKER).then(|| id.parse().ok())?
}

/// A client connection as hyper reads it: heads it cannot take replaced by
/// stand-ins (see the module documentation). Writes pass straight through.
#[derive(Debug)]
pub struct Filtered<I> {
    inner: I,
    framer: Framer,
    stash: std::sync::Arc<Stash>,
    /// Bytes read but not yet followed: a head not complete yet, and what
    /// came after it.
    held: Vec<u8>,
    /// Bytes ready for hyper that did not fit its buffer yet.
    out: Vec<u8>,
    out_at: usize,
    eof: bool,
}

impl<I> Filtered<I> {
    pub fn new(inner: I, stash: std::sync::Arc<Stash>) -> Self {
        Filtered {
            inner,
            framer: Framer::default(),
            stash,
            held: Vec::new(),
            out: Vec::new(),
            out_at: 0,
            eof: false,
        }
    }

    /// Moves bytes of `out` into `buf`; whether there were any.
    fn hand_out(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let n = (self.out.len() - self.out_at).min(buf.remaining());
        if n == 0 {
            return false;
        }
        buf.put_slice(&self.out[self.out_at..self.out_at + n]);
        self.out_at += n;
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
        true
    }

    /// Follows `new`, bytes just read into hyper's buffer: returns how many
    /// of them stay there; the rest moved to `held` (and on to `out`).
    fn take_in(&mut self, new: &[u8]) -> usize {
        if !self.held.is_empty() {
            self.held.extend_from_slice(new);
            self.follow_held();
            return 0;
        }
        let mut at = 0;
        while at < new.len() {
            match self.framer.step(&new[at..]) {
                Step::Pass(n) => at += n,
                Step::Wait => {
                    self.held.extend_from_slice(&new[at..]);
                    return at;
                }
                Step::Replace {
                    len,
                    stand_in,
                    id,
                    stashed,
                } => {
                    self.stash.put(id, stashed);
                    self.out.extend_from_slice(&stand_in);
                    self.held.extend_from_slice(&new[at + len..]);
                    self.follow_held();
                    return at;
                }
            }
        }
        at
    }

    /// Follows `held` as far as it goes, into `out`.
    fn follow_held(&mut self) {
        let mut at = 0;
        while at < self.held.len() {
            match self.framer.step(&self.held[at..]) {
                Step::Pass(n) => {
                    self.out.extend_from_slice(&self.held[at..at + n]);
                    at += n;
                }
                Step::Replace {
                    len,
                    stand_in,
                    id,
                    stashed,
                } => {
                    self.stash.put(id, stashed);
                    self.out.extend_from_slice(&stand_in);
                    at += len;
                }
                Step::Wait => break,
            }
        }
        self.held.drain(..at);
    }

    /// The client closed its side: whatever is held goes to hyper as it is.
    fn end(&mut self) {
        self.out.extend_from_slice(&self.held);
        self.held.clear();
        self.framer.blind(0);
        self.eof = true;
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Filtered<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 || this.hand_out(buf) || this.eof {
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == start {
                this.end();
                continue;
            }
            let kept = this.take_in(&buf.filled()[start..]);
            buf.set_filled(start + kept);
            if kept > 0 {
                this.hand_out(buf);
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Filtered<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
