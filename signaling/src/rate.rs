//! A token bucket over time: a sustained rate with room for a burst.

use std::time::Instant;

/// Allows `rate` events per second on average and `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket { rate, burst, tokens: burst, at: now }
    }

    /// Takes one token at `now` if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        let ms = |n| t0 + Duration::from_millis(n);
        // columns: time, taken
        let rows = [
            (0, true),
            (0, true),
            (0, true),
            (0, false), // the burst is spent
            (50, false),
            (100, true), // one token per 100 ms
            (150, false),
            (5000, true), // refilled to the burst, not beyond
            (5000, true),
            (5000, true),
            (5000, false),
            (4000, false), // a clock read before the last one adds nothing
        ];
        for (i, (at, want)) in rows.into_iter().enumerate() {
            assert_eq!(b.take(ms(at)), want, "row {i}: {at} ms");
        }
    }
}
