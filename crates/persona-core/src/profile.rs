//! The parts of a user portrait that are computed rather than read: churn risk and segment.
//!
//! Churn risk uses the user's own rhythm: with `n` events spread over `span` days, the mean gap
//! between events is `g = span / (n − 1)`. If events arrive as a Poisson process at that rate,
//! the chance of seeing no event in the `d` days since the last one is `e^(−d/g)`, so the
//! probability that the user has stopped is taken as `1 − e^(−d/g)`. It needs two events.

use serde::Serialize;

/// A user's activity, in days before the reference time ("as of").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Activity {
    pub events: u64,
    pub first_days_ago: f64,
    pub last_days_ago: f64,
}

/// Gaps shorter than this are treated as this (bursts of activity in one sitting).
const MIN_GAP_DAYS: f64 = 1.0;

impl Activity {
    /// Mean days between events; `None` with fewer than two events.
    pub fn mean_gap_days(&self) -> Option<f64> {
        (self.events >= 2).then(|| {
            ((self.first_days_ago - self.last_days_ago).max(0.0) / (self.events - 1) as f64)
                .max(MIN_GAP_DAYS)
        })
    }

    /// `1 − e^(−d/g)`: see the module documentation. `None` with fewer than two events.
    pub fn churn_risk(&self) -> Option<f64> {
        let g = self.mean_gap_days()?;
        Some(1.0 - (-self.last_days_ago.max(0.0) / g).exp())
    }

    /// `new` (first event within 30 days), `dormant` (churn risk ≥ 0.9), `at_risk` (≥ 0.6),
    /// `loyal` (20 or more events), else `active`. A single old event is `dormant` after 90 days.
    pub fn segment(&self) -> &'static str {
        if self.events == 0 {
            return "prospect";
        }
        if self.first_days_ago <= 30.0 {
            return "new";
        }
        match self.churn_risk() {
            Some(r) if r >= 0.9 => "dormant",
            Some(r) if r >= 0.6 => "at_risk",
            None if self.last_days_ago > 90.0 => "dormant",
            _ if self.events >= 20 => "loyal",
            _ => "active",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_risk_follows_the_users_rhythm() {
        // Weekly buyer, last seen a week ago: 1 − e^(−1) ≈ 0.632.
        let a = Activity {
            events: 11,
            first_days_ago: 77.0,
            last_days_ago: 7.0,
        };
        assert_eq!(a.mean_gap_days(), Some(7.0));
        assert!((a.churn_risk().unwrap() - (1.0 - (-1f64).exp())).abs() < 1e-12);
        // Same user seen yesterday: low risk.
        let b = Activity {
            last_days_ago: 1.0,
            first_days_ago: 71.0,
            ..a
        };
        assert!(b.churn_risk().unwrap() < 0.2);
        // One event: unknown.
        assert_eq!(
            Activity {
                events: 1,
                first_days_ago: 5.0,
                last_days_ago: 5.0
            }
            .churn_risk(),
            None
        );
    }

    #[test]
    fn segments() {
        let seg = |events, first, last| {
            Activity {
                events,
                first_days_ago: first,
                last_days_ago: last,
            }
            .segment()
        };
        assert_eq!(seg(0, 0.0, 0.0), "prospect");
        assert_eq!(seg(3, 10.0, 1.0), "new");
        assert_eq!(seg(10, 100.0, 60.0), "dormant"); // gap 4.4 days, silent 60
        assert_eq!(seg(10, 100.0, 10.0), "at_risk"); // gap 10, silent 10: 0.63
        assert_eq!(seg(30, 300.0, 2.0), "loyal");
        assert_eq!(seg(5, 200.0, 20.0), "active"); // gap 45, silent 20: 0.36
        assert_eq!(seg(1, 200.0, 200.0), "dormant");
    }
}
