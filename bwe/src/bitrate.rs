//! Bits per second.

use std::time::Duration;

/// A rate in bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bitrate(u64);

impl Bitrate {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// As high as representable: no limit.
    pub const MAX: Self = Self(u64::MAX);

    /// From bits per second.
    pub const fn bps(bps: u64) -> Self {
        Self(bps)
    }

    /// From kilobits per second.
    pub const fn kbps(kbps: u64) -> Self {
        Self(kbps * 1000)
    }

    /// From megabits per second.
    pub const fn mbps(mbps: u64) -> Self {
        Self(mbps * 1_000_000)
    }

    /// Bits per second.
    pub const fn as_bps(self) -> u64 {
        self.0
    }

    /// As a float, for arithmetic.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }

    /// From a float (negative and NaN are zero).
    pub fn from_f64(bps: f64) -> Self {
        if bps.is_nan() || bps <= 0.0 { Self(0) } else { Self(bps.min(u64::MAX as f64) as u64) }
    }

    /// The rate of `bytes` over `over` (zero over no time).
    pub fn of(bytes: u64, over: Duration) -> Self {
        if over.is_zero() { Self(0) } else { Self::from_f64(bytes as f64 * 8.0 / over.as_secs_f64()) }
    }

    /// Scaled by `factor`.
    pub fn mul_f64(self, factor: f64) -> Self {
        Self::from_f64(self.as_f64() * factor)
    }

    /// Bytes this rate carries in `d`.
    pub fn bytes_in(self, d: Duration) -> f64 {
        self.as_f64() * d.as_secs_f64() / 8.0
    }

    /// Time this rate takes to carry `bytes` (`Duration::MAX` at zero).
    pub fn time_for(self, bytes: usize) -> Duration {
        if self.0 == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.as_f64())
    }

    /// Sum, saturating.
    pub const fn saturating_add(self, o: Self) -> Self {
        Self(self.0.saturating_add(o.0))
    }

    /// Difference, saturating at zero.
    pub const fn saturating_sub(self, o: Self) -> Self {
        Self(self.0.saturating_sub(o.0))
    }
}

impl std::fmt::Display for Bitrate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 1_000_000 {
            write!(f, "{:.2} Mbit/s", self.0 as f64 / 1e6)
        } else {
            write!(f, "{:.0} kbit/s", self.0 as f64 / 1e3)
        }
    }
}

impl std::iter::Sum for Bitrate {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, Self::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        // columns: bytes, over (ms), expected bps
        let rows: &[(u64, u64, u64)] = &[(125_000, 1000, 1_000_000), (1250, 10, 1_000_000), (0, 5, 0), (10, 0, 0)];
        for &(bytes, ms, want) in rows {
            assert_eq!(Bitrate::of(bytes, Duration::from_millis(ms)).as_bps(), want, "{bytes} B in {ms} ms");
        }
        assert_eq!(Bitrate::mbps(1).time_for(125_000), Duration::from_secs(1));
        assert_eq!(Bitrate::ZERO.time_for(1), Duration::MAX);
        assert!((Bitrate::mbps(8).bytes_in(Duration::from_millis(1)) - 1000.0).abs() < 1e-9);
        assert_eq!(Bitrate::from_f64(-3.0), Bitrate::ZERO);
        assert_eq!(Bitrate::from_f64(f64::NAN), Bitrate::ZERO);
        assert_eq!(Bitrate::kbps(600).to_string(), "600 kbit/s");
        assert_eq!(Bitrate::kbps(2500).to_string(), "2.50 Mbit/s");
    }
}
