//! Rendezvous (highest random weight) hashing for sharded `[[route]]`s.
//!
//! Each measurement of a sharded rule lives on exactly one of its clusters:
//! the one with the highest score
//!
//! ```text
//! score(cluster, measurement) = fmix64(fnv1a64(measurement) ^ fnv1a64(cluster name))
//! ```
//!
//! where `fnv1a64` is 64-bit FNV-1a over the UTF-8 bytes (offset basis
//! `0xcbf29ce484222325`, prime `0x100000001b3`) and `fmix64` is MurmurHash3's
//! 64-bit finalizer, which spreads FNV's weakly mixed bits over the whole
//! word. Ties (equal scores need equal name hashes) go to the cluster whose
//! name sorts first, so the order clusters are listed in never matters.
//!
//! **This function is part of the on-disk contract**: data already written
//! lives where it says, so it must never change. Everything here is spelled
//! out instead of borrowed from `std` (whose `DefaultHasher` may change
//! between Rust releases), and tests pin the assignment of a few names.
//!
//! Adding a cluster to a shard moves only the measurements the new cluster
//! wins (about 1/n of them); removing one moves only its own.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One candidate of a sharded rule: its cluster and its name's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index of the cluster in the routing table.
    pub cluster: usize,
    /// `fnv1a64` of the cluster's name.
    seed: u64,
}

/// The candidates of one sharded rule, in cluster-name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    candidates: Box<[Candidate]>,
}

impl Rendezvous {
    /// Candidates from `(cluster index, cluster name)` pairs, in any order.
    pub fn new<'a>(clusters: impl IntoIterator<Item = (usize, &'a str)>) -> Rendezvous {
        let mut named: Vec<(&str, Candidate)> = clusters
            .into_iter()
            .map(|(cluster, name)| {
                let seed = fnv1a64(name.as_bytes());
                (name, Candidate { cluster, seed })
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        Rendezvous {
            candidates: named.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// The cluster index that owns `key` (a measurement name, unescaped).
    /// With no candidates at all (never built by the router) this is 0.
    pub fn pick(&self, key: &str) -> usize {
        let h = fnv1a64(key.as_bytes());
        let mut best: Option<(u64, usize)> = None;
        for c in self.candidates.iter() {
            let score = fmix64(h ^ c.seed);
            if best.map_or(true, |(top, _)| score > top) {
                best = Some((score, c.cluster));
            }
        }
        best.map_or(0, |(_, cluster)| cluster)
    }

    /// The candidate cluster indexes, in cluster-name order.
    pub fn clusters(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates.iter().map(|c| c.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["main", "k8s", "east", "west"];

    fn shard(n: usize) -> Rendezvous {
        Rendezvous::new(NAMES[..n].iter().copied().enumerate())
    }

    fn measurement(i: usize) -> String {
        format!("measurement_{i}")
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn fmix64_is_murmur3s_finalizer() {
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456bcfc34c2cb2c);
    }

    #[test]
    fn assignments_never_change_between_releases() {
        // Data on disk depends on these: a change here moves measurements.
        let two = shard(2);
        let three = shard(3);
        let got: Vec<(usize, usize)> = ["cpu", "mem", "disk", "net", "système", ""]
            .iter()
            .map(|m| (two.pick(m), three.pick(m)))
            .collect();
        assert_eq!(got, PINNED);
    }

    /// (pick among main/k8s, pick among main/k8s/east), checked against an
    /// independent implementation of the formula in the module doc.
    const PINNED: [(usize, usize); 6] = [(0, 2), (1, 1), (0, 2), (0, 2), (0, 0), (0, 0)];

    #[test]
    fn measurements_spread_evenly_over_the_clusters() {
        for n in 2..=4 {
            let shard = shard(n);
            let mut counts = vec![0usize; n];
            for i in 0..10_000 {
                counts[shard.pick(&measurement(i))] += 1;
            }
            let expected = 10_000 / n;
            for &count in &counts {
                // 5 % of the expected share is over 5 standard deviations
                assert!(count.abs_diff(expected) < expected / 20, "{n}: {counts:?}");
            }
        }
    }

    #[test]
    fn adding_a_cluster_moves_only_its_share_and_only_to_it() {
        for n in 2..=3 {
            let (before, after) = (shard(n), shard(n + 1));
            let moved: Vec<usize> = (0..10_000)
                .map(measurement)
                .filter(|m| before.pick(m) != after.pick(m))
                .map(|m| after.pick(&m))
                .collect();
            assert!(moved.iter().all(|&c| c == n), "moves went elsewhere");
            let expected = 10_000 / (n + 1);
            assert!(
                moved.len().abs_diff(expected) < expected / 10,
                "{n}: {}",
                moved.len()
            );
        }
    }

    #[test]
    fn the_order_clusters_are_listed_in_does_not_matter() {
        let forward = Rendezvous::new([(0, "main"), (1, "k8s"), (2, "east")]);
        let backward = Rendezvous::new([(2, "east"), (1, "k8s"), (0, "main")]);
        for i in 0..1_000 {
            assert_eq!(
                forward.pick(&measurement(i)),
                backward.pick(&measurement(i))
            );
        }
        assert_eq!(forward.clusters().collect::<Vec<_>>(), [2, 1, 0]);
    }

    #[test]
    fn scores_depend_on_the_cluster_name_not_its_index() {
        let a = Rendezvous::new([(0, "main"), (1, "k8s")]);
        let b = Rendezvous::new([(5, "main"), (7, "k8s")]);
        for i in 0..1_000 {
            let m = measurement(i);
            assert_eq!(a.pick(&m) * 2 + 5, b.pick(&m));
        }
    }
}
