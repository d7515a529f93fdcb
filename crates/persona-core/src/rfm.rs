//! RFM scoring: each customer's recency, frequency and monetary value scored 1–5 against the
//! population's quintiles, and the named segment of the (R, F) pair.
//!
//! With the customers' summaries from [`crate::lifetime::summarise`]:
//!
//! - recency R = days from the last purchase day to the observation day (`age − recency`);
//! - frequency F = purchase days (`frequency + 1`);
//! - monetary M = total value of all purchase days.
//!
//! The population's edges are the 20/40/60/80% quantiles of each (linear interpolation between
//! order statistics, numpy's and pandas' default). A value's score is 1 + the number of edges
//! strictly below it (bins closed on the right, as pandas `qcut`), so a score equals
//! `pd.qcut(x, 5).cat.codes + 1` whenever the five bins are distinct (checked by
//! `tests/rfm_reference.rs`); with tied edges (many one-time buyers) the scores skip the empty
//! bins rather than renumbering them. R is reversed: the most recent fifth scores 5.
//!
//! Segments from the R and F scores:
//!
//! | R \ F | 1 | 2 | 3 | 4 | 5 |
//! |---|---|---|---|---|---|
//! | 5 | New | Potential loyalist | Potential loyalist | Champions | Champions |
//! | 4 | Promising | Potential loyalist | Potential loyalist | Loyal | Loyal |
//! | 3 | About to sleep | About to sleep | Need attention | Loyal | Loyal |
//! | 2 | Hibernating | Hibernating | At risk | At risk | Can't lose them |
//! | 1 | Lost | Hibernating | At risk | At risk | Can't lose them |

use serde::{Deserialize, Serialize};

use crate::lifetime::Customer;
use crate::{CoreError, Result};

/// The population's quintile edges of R, F and M.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmEdges {
    pub recency: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

/// A customer's RFM values, scores and segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmScore {
    /// Days since the last purchase day.
    pub recency_days: f64,
    /// Purchase days.
    pub purchase_days: f64,
    /// Total value.
    pub total_value: f64,
    pub r: u8,
    pub f: u8,
    pub m: u8,
    pub segment: &'static str,
}

/// The `q` quantile of sorted values with linear interpolation (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let h = (n - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn edges(mut values: Vec<f64>) -> [f64; 4] {
    values.sort_by(f64::total_cmp);
    [0.2, 0.4, 0.6, 0.8].map(|q| quantile(&values, q))
}

/// A customer's R, F and M (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RfmValues {
    /// Days since the last purchase day.
    pub recency_days: f64,
    /// Purchase days.
    pub purchase_days: f64,
    /// Total value of all purchase days.
    pub total_value: f64,
}

impl RfmValues {
    /// From a customer's lifetime summary and total value.
    pub fn of(c: &Customer, total_value: f64) -> RfmValues {
        RfmValues {
            recency_days: c.age - c.recency,
            purchase_days: c.frequency + 1.0,
            total_value,
        }
    }
}

impl RfmEdges {
    /// The population's quintile edges; needs at least one customer with finite values.
    pub fn fit(customers: &[RfmValues]) -> Result<RfmEdges> {
        if customers.is_empty() {
            return Err(CoreError::InvalidData(
                "RFM quintiles need at least one customer".into(),
            ));
        }
        let v: Vec<(f64, f64, f64)> = customers
            .iter()
            .map(|c| (c.recency_days, c.purchase_days, c.total_value))
            .collect();
        if v.iter()
            .any(|(r, f, m)| !(r.is_finite() && f.is_finite() && m.is_finite()))
        {
            return Err(CoreError::InvalidData(
                "a customer's recency, frequency or value is not finite".into(),
            ));
        }
        Ok(RfmEdges {
            recency: edges(v.iter().map(|x| x.0).collect()),
            frequency: edges(v.iter().map(|x| x.1).collect()),
            monetary: edges(v.iter().map(|x| x.2).collect()),
        })
    }

    /// The customer's scores and segment.
    pub fn score(&self, c: &RfmValues) -> RfmScore {
        let (r, f, m) = (c.recency_days, c.purchase_days, c.total_value);
        let bin = |e: &[f64; 4], x: f64| 1 + e.iter().filter(|&&edge| edge < x).count() as u8;
        let (rs, fs) = (6 - bin(&self.recency, r), bin(&self.frequency, f));
        RfmScore {
            recency_days: r,
            purchase_days: f,
            total_value: m,
            r: rs,
            f: fs,
            m: bin(&self.monetary, m),
            segment: segment(rs, fs),
        }
    }
}

/// The named segment of an (R, F) score pair (the table in the module documentation).
pub fn segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (5, 1) => "New",
        (5, 4..) => "Champions",
        (4 | 5, 2 | 3) => "Potential loyalist",
        (4, 1) => "Promising",
        (3 | 4, 4..) => "Loyal",
        (3, 3) => "Need attention",
        (3, _) => "About to sleep",
        (1, 1) => "Lost",
        (1 | 2, 5..) => "Can't lose them",
        (1 | 2, 3 | 4) => "At risk",
        _ => "Hibernating",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfm_every_score_pair_has_the_documented_segment() {
        let table = [
            (
                5,
                [
                    "New",
                    "Potential loyalist",
                    "Potential loyalist",
                    "Champions",
                    "Champions",
                ],
            ),
            (
                4,
                [
                    "Promising",
                    "Potential loyalist",
                    "Potential loyalist",
                    "Loyal",
                    "Loyal",
                ],
            ),
            (
                3,
                [
                    "About to sleep",
                    "About to sleep",
                    "Need attention",
                    "Loyal",
                    "Loyal",
                ],
            ),
            (
                2,
                [
                    "Hibernating",
                    "Hibernating",
                    "At risk",
                    "At risk",
                    "Can't lose them",
                ],
            ),
            (
                1,
                [
                    "Lost",
                    "Hibernating",
                    "At risk",
                    "At risk",
                    "Can't lose them",
                ],
            ),
        ];
        for (r, row) in table {
            for (f, want) in (1..=5).zip(row) {
                assert_eq!(segment(r, f), want, "R {r} F {f}");
            }
        }
    }

    #[test]
    fn rfm_quantiles_interpolate_like_numpy() {
        // numpy.quantile([1, 1, 1, 1, 2, 2, 3, 5, 8, 13], [.2, .4, .6, .8]) = [1, 1.6, 2.4, 5.6]
        let e = edges(vec![13.0, 1.0, 1.0, 2.0, 1.0, 3.0, 5.0, 8.0, 1.0, 2.0]);
        let want = [1.0, 1.6, 2.4, 5.6];
        for (a, b) in e.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{e:?}");
        }
    }
}
