//! Who a request says it is, for `[limits] user_bytes`: the user name (and
//! password) from `u` and `p`, Basic auth or `Token user:password`, read
//! the way InfluxDB 1.x reads them (`u` and `p` when both are given, else
//! the `Authorization` header).
//!
//! The router never checks these credentials (the nodes do), so what is
//! read here serves as a bucket key and nothing else. The key is a keyed
//! hash of the name *and* the password: a client that merely names another
//! user, without that user's password, gets a bucket of its own and cannot
//! use up the other's allowance. A JWT (`Bearer`, or a `Token` without a
//! colon) names no user the router can read: no user limit applies.

use std::hash::{BuildHasher, Hasher, RandomState};

use http::header::{HeaderMap, AUTHORIZATION};

/// A user's name and password as the request gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub user: String,
    password: String,
}

impl Claimed {
    /// The credentials of a request: `u` and `p` (both non-empty), else a
    /// Basic or `Token user:password` `Authorization` header.
    pub fn of(u: Option<&str>, p: Option<&str>, headers: &HeaderMap) -> Option<Claimed> {
        if let (Some(user), Some(password)) = (u, p) {
            if !user.is_empty() && !password.is_empty() {
                return Some(Claimed::new(user, password));
            }
        }
        let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, value) = header.trim().split_once(' ')?;
        let pair = match scheme {
            "Basic" => String::from_utf8(decode_base64(value.trim())?).ok()?,
            "Token" => value.trim().to_owned(),
            _ => return None,
        };
        let (user, password) = pair.split_once(':')?;
        (!user.is_empty()).then(|| Claimed::new(user, password))
    }

    fn new(user: &str, password: &str) -> Claimed {
        Claimed {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The bucket key: name and password hashed with `keys`, so that keys
    /// cannot be predicted (or made to collide) from outside.
    pub fn key(&self, keys: &RandomState) -> u64 {
        let mut hasher = keys.build_hasher();
        hasher.write(self.user.as_bytes());
        hasher.write_u8(0xff); // never in UTF-8: "ab"+"c" ≠ "a"+"bc"
        hasher.write(self.password.as_bytes());
        hasher.finish()
    }
}

/// Standard base64 with padding, as Basic auth sends it; `None` if it is not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let padding = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits: u32 = 0;
        for &b in &quad[..4 - padding] {
            bits = bits << 6 | u32::from(sextet(b)?);
        }
        bits <<= 6 * padding as u32;
        out.extend_from_slice(&bits.to_be_bytes()[1..4 - padding]);
    }
    Some(out)
}

fn sextet(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    fn basic(pair: &str) -> String {
        format!("Basic {}", crate::node::base64(pair.as_bytes()))
    }

    #[test]
    fn u_and_p_come_first_then_the_header() {
        let both = Claimed::of(Some("ann"), Some("pw"), &headers(&basic("bob:x")));
        assert_eq!(both.unwrap().user, "ann");
        let no_password = Claimed::of(Some("ann"), None, &headers(&basic("bob:x")));
        assert_eq!(no_password.unwrap().user, "bob");
        assert_eq!(Claimed::of(None, None, &HeaderMap::new()), None);
    }

    #[test]
    fn basic_and_token_name_the_same_user_alike() {
        let keys = RandomState::new();
        let from_basic = Claimed::of(None, None, &headers(&basic("ann:s3:cret"))).unwrap();
        let from_token = Claimed::of(None, None, &headers("Token ann:s3:cret")).unwrap();
        let from_params = Claimed::of(Some("ann"), Some("s3:cret"), &HeaderMap::new()).unwrap();
        assert_eq!(from_basic.user, "ann");
        assert_eq!(from_basic.key(&keys), from_token.key(&keys));
        assert_eq!(from_basic.key(&keys), from_params.key(&keys));
    }

    #[test]
    fn another_password_is_another_bucket() {
        let keys = RandomState::new();
        let real = Claimed::of(Some("ann"), Some("right"), &HeaderMap::new()).unwrap();
        let spoof = Claimed::of(Some("ann"), Some("wrong"), &HeaderMap::new()).unwrap();
        assert_ne!(real.key(&keys), spoof.key(&keys));
        let shifted = Claimed::of(Some("an"), Some("nright"), &HeaderMap::new()).unwrap();
        assert_ne!(real.key(&keys), shifted.key(&keys));
    }

    #[test]
    fn tokens_without_a_user_and_bad_headers_name_nobody() {
        for value in [
            "Bearer eyJhbGciOi.x.y",
            "Token eyJhbGciOi.x.y",
            "Basic !!!!",
            "Basic YW5u",
            "Basic",
            "Token :pw",
            &basic("\u{0}\u{ff}"),
        ] {
            assert_eq!(Claimed::of(None, None, &headers(value)), None, "{value}");
        }
    }

    #[test]
    fn base64_decodes_every_padding() {
        for text in ["", "a", "ab", "abc", "abcd", "user:pässword"] {
            let encoded = crate::node::base64(text.as_bytes());
            assert_eq!(
                decode_base64(&encoded).unwrap(),
                text.as_bytes(),
                "{encoded}"
            );
        }
        for bad in ["YQ", "YQ=", "Y===", "YQ==YQ==", "YQ#="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }
}
