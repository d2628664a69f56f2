//! Following the requests of one connection in its byte stream: where each
//! head ends, whether hyper can take it, and where its body ends — read
//! exactly as hyper reads them (the same `httparse` parser for heads, the
//! same rules for `Content-Length`, `Transfer-Encoding` and chunks).
//!
//! Anything hyper would refuse (a malformed head, a bad length or chunk
//! line, an upgrade) makes the framer go blind: from then on every byte
//! passes as it is, hyper answers the error and closes the connection.

use std::mem::MaybeUninit;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use memchr::memchr;

use super::{Stashed, MARKER};

/// The largest head hyper is given as it is: its read buffer
/// (`READ_BUFFER_MAX`, 64 KiB) must hold the whole head, with room to spare.
pub(super) const HYPER_HEAD_MAX: usize = 48 * 1024;

/// The most headers hyper takes in one head (its default).
pub(super) const HYPER_MAX_HEADERS: usize = 100;

/// The largest head taken at all: Go's `DefaultMaxHeaderBytes` (1 MiB) and
/// the 4 KiB it allows on top, as InfluxDB's server takes it. A larger one
/// goes to hyper as it is, which answers 431.
pub const MAX_HEAD: usize = 1024 * 1024 + 4096;

/// The most headers a replaced head may have: as many as a `HeaderMap`
/// holds (a head that has more goes to hyper, which answers 431).
const MAX_HEADERS: usize = 32 * 1024;

/// The longest value of a header copied into a stand-in head.
const STAND_IN_VALUE_MAX: usize = 1024;

/// Headers the stand-in head keeps, so hyper frames the body and handles
/// the connection as the client asked.
const STAND_IN_HEADERS: [HeaderName; 4] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::CONNECTION,
    http::header::EXPECT,
];

/// What to do with the bytes at the front of the input.
#[derive(Debug)]
pub(super) enum Step {
    /// The first this many bytes go to hyper as they are.
    Pass(usize),
    /// The first `len` bytes are a head hyper cannot take: hyper gets
    /// `stand_in` (a small head with the same framing, which names `id`),
    /// the handler gets `stashed` back by its `id`.
    Replace {
        len: usize,
        stand_in: Vec<u8>,
        id: u64,
        stashed: Stashed,
    },
    /// The input ends inside a head: more bytes are needed.
    Wait,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Between requests, or in a head not complete yet.
    Head,
    /// In a body with this many bytes to go.
    Body(u64),
    /// In a chunked body.
    Chunked(Chunked),
    /// No longer following: every byte passes.
    Blind,
}

/// The framer of one connection.
#[derive(Debug)]
pub(super) struct Framer {
    state: State,
    /// How far the head being received was searched for its end.
    searched: usize,
    /// The number of the next stand-in: random per connection, so that a
    /// request cannot name a stashed head it did not send (a proxy may
    /// pass several clients' requests over one connection).
    next_id: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            state: State::Head,
            searched: 0,
            next_id: unguessable(),
        }
    }
}

impl Framer {
    /// The step for `input`, the stream's next bytes (at least one). After
    /// [`Step::Wait`], the next call must get the same bytes and more.
    pub(super) fn step(&mut self, input: &[u8]) -> Step {
        match &mut self.state {
            State::Blind => Step::Pass(input.len()),
            State::Body(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = State::Head;
                }
                Step::Pass(n as usize)
            }
            State::Chunked(chunked) => match chunked.advance(input) {
                Ok((n, done)) => {
                    if done {
                        self.state = State::Head;
                    }
                    Step::Pass(n)
                }
                Err(()) => self.blind(input.len()),
            },
            State::Head => self.head(input),
        }
    }

    /// Stops following the stream: the rest of the input passes.
    pub(super) fn blind(&mut self, len: usize) -> Step {
        self.state = State::Blind;
        Step::Pass(len)
    }

    fn head(&mut self, input: &[u8]) -> Step {
        // hyper skips empty lines before a request, as httparse does
        let blank = input.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
        match blank.count() {
            0 => {}
            n => return Step::Pass(n),
        }
        let Some(end) = self.find_end(input) else {
            if input.len() > MAX_HEAD {
                return self.blind(input.len());
            }
            return Step::Wait;
        };
        self.searched = 0;
        if end > MAX_HEAD {
            return self.blind(input.len());
        }
        self.judge(&input[..end])
    }

    /// The length of the head at the start of `input` (through the empty
    /// line that ends it), once it is all there.
    fn find_end(&mut self, input: &[u8]) -> Option<usize> {
        let mut from = self.searched;
        while let Some(i) = memchr(b'\n', &input[from..]) {
            let at = from + i;
            match &input[at + 1..] {
                [b'\n', ..] => return Some(at + 2),
                [b'\r', b'\n', ..] => return Some(at + 3),
                [] | [b'\r'] => {
                    self.searched = at;
                    return None;
                }
                _ => from = at + 1,
            }
        }
        self.searched = input.len();
        None
    }

    /// Passes a head hyper can take, replaces one it cannot.
    fn judge(&mut self, head: &[u8]) -> Step {
        let mut headers = [MaybeUninit::uninit(); HYPER_MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        match request.parse_with_uninit_headers(head, &mut headers) {
            Ok(httparse::Status::Complete(_)) if head.len() <= HYPER_HEAD_MAX => {
                match framing(&request) {
                    Some(state) => {
                        self.state = state;
                        Step::Pass(head.len())
                    }
                    None => self.blind(head.len()),
                }
            }
            Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
                self.replace(head)
            }
            _ => self.blind(head.len()),
        }
    }

    /// The stand-in for a head too large or with too many headers for hyper.
    fn replace(&mut self, head: &[u8]) -> Step {
        let lines = memchr::memchr_iter(b'\n', head).count();
        if lines > MAX_HEADERS {
            return self.blind(head.len());
        }
        let mut headers = vec![httparse::EMPTY_HEADER; lines];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(head);
        let (Ok(httparse::Status::Complete(_)), Some(state)) = (parsed, framing(&request)) else {
            return self.blind(head.len());
        };
        let (Some(stashed), Some(stand_in)) = (stashed(&request), stand_in(&request, self.next_id))
        else {
            return self.blind(head.len());
        };
        self.state = state;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        Step::Replace {
            len: head.len(),
            stand_in,
            id,
            stashed,
        }
    }
}

/// How hyper frames the body of `request` (RFC 9112 §6.3 as hyper applies
/// it to requests); `None` for what it refuses or upgrades.
fn framing(request: &httparse::Request<'_, '_>) -> Option<State> {
    let http11 = request.version == Some(1);
    if request.method == Some("CONNECT") {
        return None;
    }
    let (mut chunked, mut length) = (None, None);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return None;
            }
            chunked = Some(last_is_chunked(header.value));
        } else if name.eq_ignore_ascii_case("content-length") && chunked.is_none() {
            let len = digits(header.value)?;
            if length.is_some_and(|previous| previous != len) {
                return None;
            }
            length = Some(len);
        } else if name.eq_ignore_ascii_case("upgrade") && http11 {
            return None;
        }
    }
    match (chunked, length) {
        (Some(true), _) => Some(State::Chunked(Chunked::default())),
        (Some(false), _) => None,
        (None, Some(len)) if len > 0 => Some(State::Body(len)),
        (None, _) => Some(State::Head),
    }
}

fn last_is_chunked(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    text.rsplit(',')
        .next()
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// A `Content-Length` as hyper reads it: ASCII digits only, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// What the handler needs of a replaced head.
fn stashed(request: &httparse::Request<'_, '_>) -> Option<Stashed> {
    let mut headers = HeaderMap::try_with_capacity(request.headers.len()).ok()?;
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        headers.try_append(name, value).ok()?;
    }
    Some(Stashed {
        method: Method::from_bytes(request.method?.as_bytes()).ok()?,
        target: request.path?.to_string(),
        version: match request.version? {
            0 => Version::HTTP_10,
            _ => Version::HTTP_11,
        },
        headers,
    })
}

/// `METHOD /?MARKER=id HTTP/1.x` and the headers that frame the body.
fn stand_in(request: &httparse::Request<'_, '_>, id: u64) -> Option<Vec<u8>> {
    let (method, version) = (request.method?, request.version?);
    let mut head = format!("{method} /?{MARKER}={id} HTTP/1.{version}\r\n").into_bytes();
    for header in request.headers.iter() {
        if !STAND_IN_HEADERS
            .iter()
            .any(|name| header.name.eq_ignore_ascii_case(name.as_str()))
        {
            continue;
        }
        if header.value.len() > STAND_IN_VALUE_MAX {
            return None;
        }
        head.extend_from_slice(header.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(header.value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Some(head)
}

/// Where a chunked body is, byte for byte as hyper's decoder reads it.
#[derive(Debug, Clone, Copy, Default)]
struct Chunked {
    at: Chunk,
    size: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Chunk {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

impl Chunked {
    /// Consumes the front of `input`: how many bytes, and whether the body
    /// ended there; `Err` where hyper's decoder fails.
    fn advance(&mut self, input: &[u8]) -> Result<(usize, bool), ()> {
        let mut at = 0;
        while at < input.len() {
            if self.at == Chunk::Data {
                let n = self.size.min((input.len() - at) as u64);
                self.size -= n;
                at += n as usize;
                if self.size == 0 {
                    self.at = Chunk::DataCr;
                }
                continue;
            }
            let done = self.byte(input[at])?;
            at += 1;
            if done {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    /// One byte outside chunk data; `Ok(true)` when it ends the body.
    fn byte(&mut self, b: u8) -> Result<bool, ()> {
        use Chunk::*;
        self.at = match (self.at, b) {
            (Start | Size, b) if b.is_ascii_hexdigit() => {
                let digit = (b as char).to_digit(16).ok_or(())?;
                let size = self.size.checked_mul(16).ok_or(())?;
                self.size = size.checked_add(u64::from(digit)).ok_or(())?;
                Size
            }
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws | Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(()),
            (Extension, _) => Extension,
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (Trailer, b'\r') => TrailerLf,
            (Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (EndCr, b'\r') => EndLf,
            (EndCr, _) => Trailer,
            (EndLf, b'\n') => return Ok(true),
            _ => return Err(()),
        };
        Ok(false)
    }
}

/// A number no client can predict: std's per-process random hash keys,
/// fed a per-call counter and the clock. Unit tests number stand-ins from 1
/// so that the streams they expect can be written out.
#[cfg(test)]
fn unguessable() -> u64 {
    1
}

#[cfg(not(test))]
fn unguessable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(crate::clock::unix_ns());
    hasher.finish()
}
