//! Buckets per key (a client address, a user), in a map whose memory stays
//! bounded whatever keys clients make up.
//!
//! A bucket that is full is forgotten: it would behave exactly like the
//! new bucket a key gets when it is not in the map. So a key that went
//! quiet a second ago (longer, if it left a debt) is removed at the next
//! sweep, and the map holds only the keys active in about the last second.
//! A shard is swept at most once a second, by whoever uses it next.
//!
//! Against a flood of made-up keys (an attacker cycling addresses or user
//! names faster than buckets refill) each shard holds at most
//! [`MAX_KEYS`]` / `[`SHARDS`] keys. A new key that finds its shard full
//! even after a sweep shares that shard's one overflow bucket with every
//! other such key: the flood is limited as one client, known keys keep
//! their own buckets, and memory never grows past the cap.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

use super::bucket::{self, Rate, SECOND};

/// The most keys one limit keeps buckets for (about 4 MiB of map).
pub const MAX_KEYS: usize = 65_536;

/// Locks are per shard, so concurrent requests rarely wait for each other.
pub const SHARDS: usize = 16;

/// Buckets of one rate, one per key.
#[derive(Debug)]
pub struct Keyed<K> {
    rate: Rate,
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: RandomState,
    max_per_shard: usize,
}

#[derive(Debug)]
struct Shard<K> {
    full_at: HashMap<K, u128>,
    /// The bucket of new keys that found the shard full.
    overflow: u128,
    swept_at: u64,
}

impl<K: Hash + Eq + Copy> Keyed<K> {
    pub fn new(rate: Rate) -> Keyed<K> {
        Keyed::with_capacity(rate, MAX_KEYS)
    }

    fn with_capacity(rate: Rate, max_keys: usize) -> Keyed<K> {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    full_at: HashMap::new(),
                    overflow: 0,
                    swept_at: 0,
                })
            })
            .collect();
        Keyed {
            rate,
            shards,
            hasher: RandomState::new(),
            max_per_shard: (max_keys / SHARDS).max(1),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes `units` from `key`'s bucket at `now`; else the nanoseconds to wait.
    pub fn take(&self, key: K, now: u64, units: u64) -> Result<(), u64> {
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        shard.sweep(now, SECOND, self.rate);
        if let Some(full_at) = shard.full_at.get_mut(&key) {
            return bucket::take(full_at, now, self.rate, units);
        }
        if !shard.make_room(now, self.max_per_shard, self.rate) {
            return bucket::take(&mut shard.overflow, now, self.rate, units);
        }
        let full_at = shard.full_at.entry(key).or_insert(0);
        bucket::take(full_at, now, self.rate, units)
    }

    /// Gives back `units` that [`Keyed::take`] took for `key`.
    pub fn give_back(&self, key: K, units: u64) {
        let mut shard = self.shard(&key);
        let shard = &mut *shard;
        let full_at = shard.full_at.get_mut(&key).unwrap_or(&mut shard.overflow);
        bucket::give_back(full_at, units);
    }

    /// How many keys have a bucket of their own now.
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).full_at.len()).sum()
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K>> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        lock(&self.shards[index])
    }
}

impl<K: Hash + Eq + Copy> Shard<K> {
    /// Forgets full buckets, at most once per `every` nanoseconds.
    fn sweep(&mut self, now: u64, every: u64, rate: Rate) {
        if now.saturating_sub(self.swept_at) < every {
            return;
        }
        self.full_at
            .retain(|_, full_at| !bucket::is_full(*full_at, now, rate));
        self.swept_at = now;
    }

    /// Whether a new key fits, after forgetting full buckets if the shard
    /// is at its cap (at most 16 times a second, so that a flood of new
    /// keys does not make every request sweep).
    fn make_room(&mut self, now: u64, max: usize, rate: Rate) -> bool {
        if self.full_at.len() >= max {
            self.sweep(now, SECOND / 16, rate);
        }
        self.full_at.len() < max
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic elsewhere cannot leave a bucket half-updated: it is one u64
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_bucket() {
        let keyed = Keyed::new(Rate::new(2));
        assert!(keyed.take(1u32, SECOND, 2).is_ok());
        assert!(keyed.take(1u32, SECOND, 1).is_err());
        assert!(keyed.take(2u32, SECOND, 2).is_ok());
    }

    #[test]
    fn idle_keys_are_forgotten_once_their_buckets_are_full() {
        let keyed = Keyed::new(Rate::new(10));
        for key in 0..1000u32 {
            keyed.take(key, SECOND, 5).unwrap();
        }
        assert_eq!(keyed.keys(), 1000);
        // half a second later their buckets are full again; whichever key
        // comes next sweeps its shard
        for key in 1000..1000 + SHARDS as u32 * 32 {
            keyed.take(key, 3 * SECOND, 1).unwrap();
        }
        assert!(keyed.keys() <= SHARDS * 32, "{}", keyed.keys());
    }

    #[test]
    fn a_key_in_debt_is_not_forgotten() {
        let keyed = Keyed::new(Rate::new(10));
        keyed.take(7u32, SECOND, 50).unwrap(); // five seconds of debt
        for key in 0..200u32 {
            let _ = keyed.take(key + 100, 3 * SECOND, 1);
        }
        // 3 s of debt left, 0.1 s for the unit asked, one second of burst
        assert_eq!(keyed.take(7, 3 * SECOND, 1), Err(SECOND * 21 / 10));
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_the_cap_and_shares_one_bucket() {
        let keyed = Keyed::with_capacity(Rate::new(1), SHARDS * 4);
        let mut admitted = 0;
        for key in 0..100_000u32 {
            if keyed.take(key, SECOND, 1).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(keyed.keys(), SHARDS * 4);
        // each key with a bucket once, and each shard's overflow bucket once
        assert_eq!(admitted, SHARDS * 4 + SHARDS);
    }

    #[test]
    fn known_keys_keep_their_buckets_during_a_flood() {
        let keyed = Keyed::with_capacity(Rate::new(100), SHARDS * 4);
        keyed.take(u32::MAX, SECOND, 1).unwrap();
        for key in 0..10_000u32 {
            let _ = keyed.take(key, SECOND, 100);
        }
        assert!(keyed.take(u32::MAX, SECOND, 99).is_ok());
    }

    #[test]
    fn giving_back_restores_the_keys_bucket() {
        let keyed = Keyed::new(Rate::new(10));
        keyed.take(1u32, SECOND, 10).unwrap();
        keyed.give_back(1, 10);
        assert!(keyed.take(1u32, SECOND, 10).is_ok());
    }
}
