//! How many retransmissions one downtrack may cost: a token bucket filled by the packets it
//! forwards. A subscriber whose path collapses NACKs almost everything; answering all of it
//! would multiply the server's output exactly when the path can take the least (and starve
//! every other subscriber of the room worker's time). Browsers cope with a limited answer:
//! what is not resent is recovered by a keyframe.

/// Retransmissions allowed per forwarded packet (a quarter of the stream's rate).
pub const RETRANSMIT_SHARE: f32 = 0.25;
/// Most retransmissions in one burst (one lost video frame at 1.5 Mb/s is ~7 packets; a
/// short outage a few frames).
pub const RETRANSMIT_BURST: f32 = 32.0;

/// Retransmission token bucket of one downtrack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitBudget {
    tokens: f32,
}

impl Default for RetransmitBudget {
    fn default() -> Self {
        RetransmitBudget { tokens: RETRANSMIT_BURST }
    }
}

impl RetransmitBudget {
    /// A packet was forwarded: earns a share of a retransmission.
    pub fn on_forwarded(&mut self) {
        self.tokens = (self.tokens + RETRANSMIT_SHARE).min(RETRANSMIT_BURST);
    }

    /// Takes one retransmission if the budget allows it.
    pub fn take(&mut self) -> bool {
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

    #[test]
    fn budget_scenarios() {
        // columns: name, (forwarded packets, retransmissions asked) steps, retransmissions granted
        let rows: &[(&str, &[(u32, u32)], u32)] = &[
            ("a burst within the allowance", &[(0, 10)], 10),
            ("a burst larger than the allowance", &[(0, 100)], 32),
            ("steady 5% loss is always answered", &[(100, 5), (100, 5), (100, 5), (100, 5)], 20),
            ("a collapsed path gets a quarter of the stream", &[(0, 32), (100, 100), (100, 100)], 32 + 25 + 25),
            ("savings are capped", &[(1000, 0), (0, 100)], 32),
        ];
        for (name, steps, want) in rows {
            let mut b = RetransmitBudget::default();
            let mut granted = 0;
            for &(forwarded, asked) in *steps {
                for _ in 0..forwarded {
                    b.on_forwarded();
                }
                granted += (0..asked).filter(|_| b.take()).count() as u32;
            }
            assert_eq!(granted, *want, "{name}");
        }
    }
}
