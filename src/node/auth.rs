//! What the router has learned about a node's authentication, so that a
//! queued request can never do what the node would have refused.
//!
//! It owns two facts per node, both learned from the node's own answers:
//!
//! * whether the node checks credentials at all ([`AuthRequired`]): a 401 or
//!   403 says yes, a 2xx to a request without credentials says no, and the
//!   health checker asks once (`SHOW DATABASES` without credentials) while
//!   it does not know;
//! * which client credentials it accepted lately, as salted SHA-256 hashes in
//!   memory only (the salt is random per process; nothing is written to disk
//!   and no credential is kept in clear here).
//!
//! The write and broadcast paths ask [`AuthMemory::vouches_for`] when no node
//! of a cluster could check a request itself (all of them down or backlogged):
//! the request is queued only when the nodes need no credentials or one of
//! them accepted these very credentials before. It never decides anything
//! else: the node stays the judge, at replay too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Most accepted credentials remembered per node; the least recently used
/// go first.
const MAX_REMEMBERED: usize = 4096;

/// Whether a node checks credentials, as far as the router knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequired {
    Unknown,
    No,
    Yes,
}

/// Per-node memory of authentication answers.
#[derive(Debug)]
pub struct AuthMemory {
    required: AtomicU8,
    accepted: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Default for AuthMemory {
    fn default() -> Self {
        AuthMemory {
            required: AtomicU8::new(0),
            accepted: Mutex::new(HashMap::new()),
        }
    }
}

impl AuthMemory {
    pub fn required(&self) -> AuthRequired {
        match self.required.load(Ordering::Relaxed) {
            1 => AuthRequired::No,
            2 => AuthRequired::Yes,
            _ => AuthRequired::Unknown,
        }
    }

    pub fn set_required(&self, required: AuthRequired) {
        let value = match required {
            AuthRequired::Unknown => 0,
            AuthRequired::No => 1,
            AuthRequired::Yes => 2,
        };
        // read first: on the write path this is learned again on every
        // answer, and a store would dirty the cache line each time
        if self.required.load(Ordering::Relaxed) != value {
            self.required.store(value, Ordering::Relaxed);
        }
    }

    /// Learns from the node's answer `status` to a client request that
    /// carried `credentials`.
    pub fn learn(&self, status: http::StatusCode, credentials: Option<&Secret>) {
        let denied =
            status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN;
        if denied {
            self.set_required(AuthRequired::Yes);
        }
        let Some(credentials) = credentials else {
            if status.is_success() {
                self.set_required(AuthRequired::No);
            }
            return;
        };
        let key = salted(credentials);
        let Ok(mut accepted) = self.accepted.lock() else {
            return;
        };
        if status.is_success() {
            if accepted.len() >= MAX_REMEMBERED && !accepted.contains_key(&key) {
                forget_oldest(&mut accepted);
            }
            accepted.insert(key, Instant::now());
        } else if status == http::StatusCode::UNAUTHORIZED {
            accepted.remove(&key);
        }
    }

    /// Whether a request with `credentials` may wait in this node's queue
    /// without the node having checked it: the node needs none, or accepted
    /// these before. `router_has_credentials` settles the unknown case: a
    /// cluster configured with credentials is taken to check them.
    pub fn vouches_for(&self, credentials: Option<&Secret>, router_has_credentials: bool) -> bool {
        let required = match self.required() {
            AuthRequired::No => false,
            AuthRequired::Yes => true,
            AuthRequired::Unknown => router_has_credentials,
        };
        if !required {
            return true;
        }
        let Some(credentials) = credentials else {
            return false;
        };
        self.accepted
            .lock()
            .map(|accepted| accepted.contains_key(&salted(credentials)))
            .unwrap_or(false)
    }
}

fn forget_oldest(accepted: &mut HashMap<[u8; 32], Instant>) {
    if let Some(oldest) = accepted.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
        accepted.remove(&oldest);
    }
}

/// SHA-256 of the process's salt and the credentials.
fn salted(credentials: &Secret) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt());
    hasher.update(credentials.expose().as_bytes());
    hasher.finalize().into()
}

/// 32 random bytes, drawn once per process.
fn salt() -> &'static [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    SALT.get_or_init(|| {
        let mut salt = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt));
        if read.is_err() {
            // no /dev/urandom: std's per-process random hash keys instead
            use std::hash::{BuildHasher, Hasher};
            for (i, piece) in salt.chunks_mut(8).enumerate() {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_usize(i);
                piece.copy_from_slice(&hasher.finish().to_le_bytes());
            }
        }
        salt
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn secret(s: &str) -> Secret {
        Secret::new(s)
    }

    #[test]
    fn a_node_that_needs_no_credentials_vouches_for_anyone() {
        let memory = AuthMemory::default();
        memory.learn(StatusCode::NO_CONTENT, None);
        assert_eq!(memory.required(), AuthRequired::No);
        assert!(memory.vouches_for(None, true));
    }

    #[test]
    fn only_credentials_the_node_accepted_are_vouched_for() {
        let memory = AuthMemory::default();
        memory.learn(StatusCode::UNAUTHORIZED, Some(&secret("Basic bad")));
        memory.learn(StatusCode::NO_CONTENT, Some(&secret("Basic good")));
        assert_eq!(memory.required(), AuthRequired::Yes);
        assert!(memory.vouches_for(Some(&secret("Basic good")), false));
        assert!(!memory.vouches_for(Some(&secret("Basic bad")), false));
        assert!(!memory.vouches_for(Some(&secret("Basic other")), false));
        assert!(!memory.vouches_for(None, false));
    }

    #[test]
    fn credentials_refused_later_are_forgotten() {
        let memory = AuthMemory::default();
        memory.learn(StatusCode::NO_CONTENT, Some(&secret("Basic x")));
        memory.learn(StatusCode::UNAUTHORIZED, Some(&secret("Basic x")));
        assert!(!memory.vouches_for(Some(&secret("Basic x")), false));
    }

    #[test]
    fn an_unknown_node_is_taken_to_check_credentials_when_the_router_has_some() {
        let memory = AuthMemory::default();
        assert!(!memory.vouches_for(None, true));
        assert!(memory.vouches_for(None, false));
    }

    #[test]
    fn the_memory_is_bounded() {
        let memory = AuthMemory::default();
        for i in 0..MAX_REMEMBERED + 10 {
            memory.learn(StatusCode::NO_CONTENT, Some(&secret(&format!("Basic {i}"))));
        }
        assert_eq!(memory.accepted.lock().unwrap().len(), MAX_REMEMBERED);
        let last = secret(&format!("Basic {}", MAX_REMEMBERED + 9));
        assert!(memory.vouches_for(Some(&last), true));
    }

    #[test]
    fn hashes_are_salted_and_never_the_credentials() {
        let hash = salted(&secret("Basic x"));
        let plain: [u8; 32] = Sha256::digest(b"Basic x").into();
        assert_ne!(hash, plain);
    }
}
