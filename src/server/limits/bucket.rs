//! The token bucket, kept as one number: the time at which the bucket is
//! full again (the "theoretical arrival time" of the generic cell rate
//! algorithm, GCRA).
//!
//! A bucket of rate `r` holds at most one second's worth, `r` tokens, and
//! refills continuously. Instead of a token count and a last-refill time it
//! stores `full_at`: taking `n` tokens moves `full_at` forward by the time
//! `n` tokens take to refill; the bucket is full whenever `full_at <= now`,
//! and lacks `full_at - now` of refill time otherwise. So one number is a
//! whole bucket, a bucket that is full is the same as no bucket at all
//! (which is what lets idle buckets be forgotten), and nothing here reads a
//! clock: callers pass `now`, in nanoseconds from any fixed origin.
//!
//! Time is kept *scaled*: nanoseconds × rate, in a `u128`. One token then
//! refills in exactly [`SECOND`] scaled units and the burst is exactly
//! `SECOND × rate`, so the arithmetic is exact whatever the rate (a rate
//! of 3/s gives 3 requests in a burst, not 2 after rounding), and no
//! product of a `u64` time and a `u64` rate can overflow it.
//!
//! An amount larger than the burst (a body bigger than one second's worth
//! of bytes) is taken from a full bucket and leaves it in debt: the next
//! request waits until the debt is paid back. Refusing such an amount
//! forever would make a rate limit also a size limit, which
//! `server.max_body_size` already is.

/// One second, in the nanoseconds `now` is counted in.
pub const SECOND: u64 = 1_000_000_000;

/// Units (requests or bytes) per second; the burst is one second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    per_second: u64,
}

impl Rate {
    /// A rate of `per_second` units per second (at least 1).
    pub fn new(per_second: u64) -> Rate {
        Rate {
            per_second: per_second.max(1),
        }
    }

    pub fn per_second(self) -> u64 {
        self.per_second
    }

    /// `now` (nanoseconds) on the scaled clock.
    fn scaled(self, now: u64) -> u128 {
        u128::from(now) * u128::from(self.per_second)
    }

    /// The burst: one second's worth of tokens, in scaled time.
    fn burst(self) -> u128 {
        self.scaled(SECOND)
    }
}

/// Scaled time `units` take to refill.
fn refill(units: u64) -> u128 {
    u128::from(units) * u128::from(SECOND)
}

/// Takes `units` from the bucket `full_at` at time `now`. When it holds
/// too few, nothing is taken and the answer is how many nanoseconds to
/// wait until it holds enough.
pub fn take(full_at: &mut u128, now: u64, rate: Rate, units: u64) -> Result<(), u64> {
    let now = rate.scaled(now);
    let start = (*full_at).max(now);
    let lacking = start - now;
    let needed = refill(units).min(rate.burst());
    let short = lacking.saturating_add(needed).saturating_sub(rate.burst());
    if short > 0 {
        let wait = short.div_ceil(u128::from(rate.per_second));
        return Err(u64::try_from(wait).unwrap_or(u64::MAX));
    }
    *full_at = start.saturating_add(refill(units));
    Ok(())
}

/// Gives back `units` taken earlier (a request another limit refused).
pub fn give_back(full_at: &mut u128, units: u64) {
    *full_at = full_at.saturating_sub(refill(units));
}

/// Whether the bucket is full at `now`, so it can be forgotten.
pub fn is_full(full_at: u128, now: u64, rate: Rate) -> bool {
    full_at <= rate.scaled(now)
}

/// The whole seconds of a wait, as `Retry-After` says it: at least 1.
pub fn whole_seconds(wait: u64) -> u64 {
    wait.div_ceil(SECOND).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Takes one unit at a time until refused; how many were taken.
    fn drain(full_at: &mut u128, now: u64, rate: Rate) -> u64 {
        let mut taken = 0;
        while take(full_at, now, rate, 1).is_ok() {
            taken += 1;
        }
        taken
    }

    #[test]
    fn a_full_bucket_gives_one_seconds_worth_at_once() {
        let mut full_at = 0;
        assert_eq!(drain(&mut full_at, 5 * SECOND, Rate::new(100)), 100);
    }

    #[test]
    fn an_empty_bucket_refills_at_the_rate() {
        let rate = Rate::new(100);
        let mut full_at = 0;
        drain(&mut full_at, SECOND, rate);
        assert_eq!(drain(&mut full_at, SECOND + 100 * MS, rate), 10);
        assert_eq!(drain(&mut full_at, SECOND + 150 * MS, rate), 5);
        // never more than the burst, however long it rests
        assert_eq!(drain(&mut full_at, 100 * SECOND, rate), 100);
    }

    #[test]
    fn a_refusal_says_how_long_until_enough_is_back() {
        let rate = Rate::new(1000);
        let mut full_at = 0;
        take(&mut full_at, SECOND, rate, 1000).unwrap();
        // 250 units refill in 250 ms
        assert_eq!(take(&mut full_at, SECOND, rate, 250), Err(250 * MS));
        assert_eq!(
            take(&mut full_at, SECOND + 200 * MS, rate, 250),
            Err(50 * MS)
        );
        assert_eq!(take(&mut full_at, SECOND + 250 * MS, rate, 250), Ok(()));
    }

    #[test]
    fn a_refusal_takes_nothing() {
        let rate = Rate::new(10);
        let mut full_at = 0;
        take(&mut full_at, SECOND, rate, 8).unwrap();
        let before = full_at;
        assert!(take(&mut full_at, SECOND, rate, 5).is_err());
        assert_eq!(full_at, before);
        assert_eq!(take(&mut full_at, SECOND, rate, 2), Ok(()));
    }

    #[test]
    fn more_than_the_burst_needs_a_full_bucket_and_leaves_a_debt() {
        let rate = Rate::new(1000);
        let mut full_at = 0;
        take(&mut full_at, SECOND, rate, 1).unwrap();
        // 3000 units at once: only from a full bucket
        assert_eq!(take(&mut full_at, SECOND, rate, 3000), Err(MS));
        assert_eq!(take(&mut full_at, SECOND + MS, rate, 3000), Ok(()));
        // the debt: three seconds of refill before the bucket is full again
        assert!(!is_full(full_at, 4 * SECOND, rate));
        assert!(is_full(full_at, 4 * SECOND + MS, rate));
        assert_eq!(take(&mut full_at, SECOND + MS, rate, 1000), Err(3 * SECOND));
        assert_eq!(whole_seconds(3 * SECOND), 3);
    }

    #[test]
    fn over_time_the_rate_holds_whatever_the_amounts() {
        // 7 KB bodies against 100 KB/s, offered every millisecond for 10 s
        let rate = Rate::new(100_000);
        let (mut full_at, mut passed) = (0, 0);
        for ms in 0..10_000 {
            if take(&mut full_at, ms * MS, rate, 7_000).is_ok() {
                passed += 7_000;
            }
        }
        // the burst plus ten seconds of refill, within one body
        assert!((1_093_000..=1_100_000).contains(&passed), "{passed}");
    }

    #[test]
    fn giving_back_undoes_a_take() {
        let rate = Rate::new(10);
        let mut full_at = 0;
        take(&mut full_at, SECOND, rate, 10).unwrap();
        give_back(&mut full_at, 4);
        assert_eq!(drain(&mut full_at, SECOND, rate), 4);
        // never below "full"
        give_back(&mut full_at, 1_000_000);
        assert!(is_full(full_at, 0, rate));
    }

    #[test]
    fn a_bucket_is_full_once_its_refill_time_has_passed() {
        let rate = Rate::new(2);
        let mut full_at = 0;
        take(&mut full_at, 10 * SECOND, rate, 1).unwrap();
        assert!(!is_full(full_at, 10 * SECOND, rate));
        assert!(is_full(full_at, 10 * SECOND + SECOND / 2, rate));
    }

    #[test]
    fn rates_that_do_not_divide_a_second_are_exact() {
        for per_second in [3, 7, 999_999_937, 64 << 30] {
            let rate = Rate::new(per_second);
            let mut full_at = 0;
            assert_eq!(take(&mut full_at, SECOND, rate, per_second), Ok(()));
            assert!(take(&mut full_at, SECOND, rate, 1).is_err());
        }
        let rate = Rate::new(3);
        let mut full_at = 0;
        assert_eq!(drain(&mut full_at, SECOND, rate), 3);
        // one token is back after a third of a second, rounded up
        assert_eq!(take(&mut full_at, SECOND, rate, 1), Err(333_333_334));
    }

    #[test]
    fn huge_amounts_and_times_do_not_overflow() {
        let rate = Rate::new(u64::MAX);
        let mut full_at = 0;
        assert!(take(&mut full_at, u64::MAX, rate, u64::MAX).is_ok());
        assert!(take(&mut full_at, 0, rate, u64::MAX).is_err());
        let slow = Rate::new(1);
        let mut debt = 0;
        assert!(take(&mut debt, 0, slow, u64::MAX).is_ok());
        assert_eq!(take(&mut debt, 0, slow, 1), Err(u64::MAX));
        assert_eq!(whole_seconds(0), 1);
        assert_eq!(whole_seconds(SECOND + 1), 2);
        assert_eq!(whole_seconds(u64::MAX), u64::MAX.div_ceil(SECOND));
    }
}
