//! Keyed rate limiters (governor). A refused request becomes a 429 with `Retry-After`.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// A limit of `count` requests per window on some key (an IP, an API key id, a license key).
/// Bursts up to the whole window's allowance are allowed, then requests are admitted at the
/// steady rate.
pub struct Limiter<K: Hash + Eq + Clone> {
    count: u32,
    inner: Option<DefaultKeyedRateLimiter<K>>,
    /// Requests refused since start (the metrics read it; counted here, only on refusal, so
    /// an admitted request pays nothing for it).
    refused: AtomicU64,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        Self::per_window(per_minute, Duration::from_secs(60))
    }

    /// `count` requests per `window`; 0 turns the limit off.
    pub fn per_window(count: u32, window: Duration) -> Self {
        let inner = NonZeroU32::new(count).and_then(|n| {
            Quota::with_period(window / n.get())
                .map(|quota| RateLimiter::keyed(quota.allow_burst(n)))
        });
        Self {
            count,
            inner,
            refused: AtomicU64::new(0),
        }
    }

    /// Requests this limit refused since start.
    pub fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn check(&self, key: &K) -> Result<(), Error> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Error::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                limit: self.count,
            }
        })
    }

    /// Forgets keys whose allowance is full again, so memory stays bounded.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.inner {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// At most `count` failures per `window` on a key (an account, a device cookie), spent only
/// by failures. Unlike [`Limiter`], a unit can be reserved before the outcome is known and
/// given back when it was a success: reserving first keeps the bound exact under concurrent
/// attempts (each waits for its password check with a unit in hand). The budget refills at
/// the steady rate (one unit per `window / count`), like a GCRA.
pub struct FailureBudget<K: Hash + Eq + Clone> {
    count: u32,
    /// One unit's refill time; `None` when the budget is off.
    period: Option<Duration>,
    window: Duration,
    /// Per key, the instant its budget is whole again.
    full_at: std::sync::Mutex<std::collections::HashMap<K, std::time::Instant>>,
    refused: AtomicU64,
}

impl<K: Hash + Eq + Clone> FailureBudget<K> {
    /// `count` failures per `window`; 0 turns the budget off.
    pub fn per_window(count: u32, window: Duration) -> Self {
        Self {
            count,
            period: NonZeroU32::new(count).map(|n| window / n.get()),
            window,
            full_at: std::sync::Mutex::new(std::collections::HashMap::new()),
            refused: AtomicU64::new(0),
        }
    }

    /// Attempts this budget refused since start.
    pub fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn per_minute(count: u32) -> Self {
        Self::per_window(count, Duration::from_secs(60))
    }

    fn refused(&self, wait: Duration) -> Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        Error::RateLimited {
            retry_after: wait,
            limit: self.count,
        }
    }

    /// Whether one more failure fits, without spending anything: `Err(RateLimited)` while
    /// the key's budget is used up.
    pub fn check(&self, key: &K) -> Result<(), Error> {
        let Some(period) = self.period else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let map = self
            .full_at
            .lock()
            .map_err(|_| Error::Storage("failure budget poisoned".into()))?;
        let full_at = map.get(key).copied().unwrap_or(now).max(now);
        match (full_at + period).checked_duration_since(now + self.window) {
            Some(wait) if !wait.is_zero() => Err(self.refused(wait)),
            _ => Ok(()),
        }
    }

    /// Reserves one unit for an attempt whose outcome is not known yet; `Err(RateLimited)`
    /// (nothing reserved) while the budget is used up. [`FailureBudget::give_back`] returns
    /// it after a success.
    pub fn reserve(&self, key: &K) -> Result<(), Error> {
        let Some(period) = self.period else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut map = self
            .full_at
            .lock()
            .map_err(|_| Error::Storage("failure budget poisoned".into()))?;
        let full_at = map.get(key).copied().unwrap_or(now).max(now);
        let after = full_at + period;
        if let Some(wait) = after.checked_duration_since(now + self.window)
            && !wait.is_zero()
        {
            return Err(self.refused(wait));
        }
        // Bounded without forgetting a locked key: only keys whose budget is whole go.
        if map.len() >= 100_000 {
            map.retain(|_, t| *t > now);
        }
        map.insert(key.clone(), after);
        Ok(())
    }

    /// Returns a unit reserved by [`FailureBudget::reserve`]: the attempt succeeded.
    pub fn give_back(&self, key: &K) {
        let Some(period) = self.period else {
            return;
        };
        if let Ok(mut map) = self.full_at.lock()
            && let Some(t) = map.get_mut(key)
        {
            let now = std::time::Instant::now();
            *t = t.checked_sub(period).unwrap_or(now).max(now);
        }
    }

    /// Forgets keys whose budget is whole again, so memory stays bounded.
    pub fn forget_idle(&self) {
        let now = std::time::Instant::now();
        if let Ok(mut map) = self.full_at.lock() {
            map.retain(|_, t| *t > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_budget_is_spent_by_failures_only() -> Result<(), Error> {
        let budget = FailureBudget::per_minute(3);
        let key = "account".to_owned();
        // Successes: reserved and given back, any number of times.
        for _ in 0..10 {
            budget.reserve(&key)?;
            budget.give_back(&key);
        }
        for _ in 0..3 {
            budget.check(&key)?;
            budget.reserve(&key)?;
        }
        assert!(matches!(
            budget.check(&key),
            Err(Error::RateLimited { limit: 3, .. })
        ));
        let Err(Error::RateLimited { retry_after, .. }) = budget.reserve(&key) else {
            panic!("a fourth failure within the minute is refused");
        };
        assert!(retry_after <= Duration::from_secs(20), "{retry_after:?}");
        assert!(budget.check(&"another".to_owned()).is_ok());
        Ok(())
    }

    #[test]
    fn a_zero_budget_is_off() {
        let budget = FailureBudget::per_minute(0);
        for _ in 0..100 {
            assert!(budget.reserve(&1).is_ok());
        }
    }
}
