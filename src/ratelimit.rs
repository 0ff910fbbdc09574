//! Keyed rate limiters (governor). A refused request becomes a 429 with `Retry-After`.

use std::hash::Hash;
use std::num::NonZeroU32;
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
        Self { count, inner }
    }

    pub fn check(&self, key: &K) -> Result<(), Error> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| Error::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                limit: self.count,
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
