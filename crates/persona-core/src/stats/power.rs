//! Sample size and minimum detectable effect of a two-arm comparison, as statsmodels'
//! `NormalIndPower` computes them (checked to 1e-6 by `tests/gbstats_reference.rs` against
//! `scripts/gbstats_reference.py`).
//!
//! With equal arms of `n` users, the standardised effect `d` and `z = Φ⁻¹(1 − α/2)`, the power of
//! the two-sided z-test is `P(d, n) = Φ(d sqrt(n/2) − z) + Φ(−d sqrt(n/2) − z)` (statsmodels
//! `normal_power` with `nobs = 1/(1/n + 1/n)`). The effect is standardised as:
//!
//! - a proportion with baseline `p` and effect `δ`: Cohen's `h = 2 asin(sqrt(p + δ)) − 2 asin(sqrt(p))`
//!   (statsmodels `proportion_effectsize`);
//! - a mean with standard deviation `σ`: `d = δ/σ`.
//!
//! With `k > 2` arms every arm is compared with the control, `k − 1` comparisons, and `α` is
//! divided among them (Bonferroni), so the answer holds for the whole report.

use serde::{Deserialize, Serialize};

use super::dist::{normal_sf, normal_two_sided_critical};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum Baseline {
    /// A rate in (0, 1) (conversion rate).
    Proportion { rate: f64 },
    /// A mean with its standard deviation per user (revenue per user).
    Mean { mean: f64, sd: f64 },
}

/// Why a power question has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum PowerError {
    /// A parameter is out of its range; the message names it.
    Parameter(String),
    /// No effect inside the metric's range reaches the power with this many users.
    Unreachable(String),
}

/// The answer: both directions give every figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerPlan {
    /// The level each comparison is tested at: `alpha/(arms − 1)`.
    pub alpha_per_comparison: f64,
    /// The absolute minimum detectable effect `δ`.
    pub mde: f64,
    /// `δ` relative to the baseline (`null` for a zero baseline).
    pub mde_relative: Option<f64>,
    /// The standardised effect (Cohen's h or d).
    pub effect_size: f64,
    /// Users per arm, exactly (the solution of `P(d, n) = power`).
    pub users_per_arm_exact: f64,
    /// Users per arm, rounded up.
    pub users_per_arm: u64,
}

fn power_of(d: f64, n: f64, z: f64) -> f64 {
    let shift = d.abs() * (n / 2.0).sqrt();
    normal_sf(z - shift).unwrap_or(f64::NAN) + normal_sf(z + shift).unwrap_or(f64::NAN)
}

/// `x` in `[lo, hi]` with `f(x) = target` for `f` increasing, by bisection to full precision.
fn solve_increasing(f: impl Fn(f64) -> f64, target: f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn check(alpha: f64, power: f64, arms: u32) -> Result<(f64, f64), PowerError> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(PowerError::Parameter(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    if !(power > 0.0 && power < 1.0) {
        return Err(PowerError::Parameter(format!(
            "power must be in (0, 1), got {power}"
        )));
    }
    if arms < 2 {
        return Err(PowerError::Parameter(format!(
            "arms must be at least 2 (a control and a treatment), got {arms}"
        )));
    }
    let per = alpha / f64::from(arms - 1);
    let z = normal_two_sided_critical(per)
        .ok_or_else(|| PowerError::Parameter(format!("alpha {alpha} has no critical value")))?;
    if power <= per {
        return Err(PowerError::Parameter(format!(
            "power {power} must exceed the per-comparison alpha {per}"
        )));
    }
    Ok((per, z))
}

fn check_baseline(baseline: Baseline) -> Result<(), PowerError> {
    match baseline {
        Baseline::Proportion { rate } if !(rate > 0.0 && rate < 1.0) => Err(PowerError::Parameter(
            format!("a baseline rate must be in (0, 1), got {rate}"),
        )),
        Baseline::Mean { mean, sd } if !(mean.is_finite() && sd > 0.0 && sd.is_finite()) => {
            Err(PowerError::Parameter(format!(
                "a baseline mean needs a finite mean and a positive standard deviation, got \
                 mean {mean}, sd {sd}"
            )))
        }
        _ => Ok(()),
    }
}

fn effect_size(baseline: Baseline, mde: f64) -> f64 {
    match baseline {
        Baseline::Proportion { rate } => {
            2.0 * (rate + mde).sqrt().asin() - 2.0 * rate.sqrt().asin()
        }
        Baseline::Mean { sd, .. } => mde / sd,
    }
}

fn plan(baseline: Baseline, per: f64, mde: f64, d: f64, n: f64) -> PowerPlan {
    let base = match baseline {
        Baseline::Proportion { rate } => rate,
        Baseline::Mean { mean, .. } => mean,
    };
    PowerPlan {
        alpha_per_comparison: per,
        mde,
        mde_relative: (base != 0.0).then(|| mde / base),
        effect_size: d,
        users_per_arm_exact: n,
        users_per_arm: n.ceil() as u64,
    }
}

/// Users per arm to detect an absolute effect `mde` (positive or negative, not 0) with
/// probability `power` at level `alpha` over `arms` arms.
pub fn users_per_arm(
    baseline: Baseline,
    mde: f64,
    alpha: f64,
    power: f64,
    arms: u32,
) -> Result<PowerPlan, PowerError> {
    let (per, z) = check(alpha, power, arms)?;
    check_baseline(baseline)?;
    if let Baseline::Proportion { rate } = baseline {
        if !(rate + mde > 0.0 && rate + mde < 1.0) {
            return Err(PowerError::Parameter(format!(
                "baseline rate {rate} plus the effect {mde} must stay in (0, 1)"
            )));
        }
    }
    if !(mde != 0.0 && mde.is_finite()) {
        return Err(PowerError::Parameter(format!(
            "the minimum detectable effect must be a non-zero number, got {mde}"
        )));
    }
    let d = effect_size(baseline, mde);
    // Power grows with n from (at n → 0) alpha to 1: bracket, then bisect.
    let mut hi = 2.0;
    while power_of(d, hi, z) < power {
        hi *= 2.0;
        if hi > 1e18 {
            return Err(PowerError::Unreachable(format!(
                "the effect {mde} is too small to detect with any number of users"
            )));
        }
    }
    let n = solve_increasing(|n| power_of(d, n, z), power, 0.0, hi);
    Ok(plan(baseline, per, mde, d, n))
}

/// The smallest positive absolute effect detected with probability `power` at level `alpha` over
/// `arms` arms of `users` users each.
pub fn minimum_detectable_effect(
    baseline: Baseline,
    users: f64,
    alpha: f64,
    power: f64,
    arms: u32,
) -> Result<PowerPlan, PowerError> {
    let (per, z) = check(alpha, power, arms)?;
    check_baseline(baseline)?;
    if !(users >= 2.0 && users.is_finite()) {
        return Err(PowerError::Parameter(format!(
            "users per arm must be at least 2, got {users}"
        )));
    }
    let d = match baseline {
        Baseline::Proportion { rate } => {
            // h grows with the effect up to p + δ = 1, where h = π − 2 asin(sqrt(p)).
            let h_max = std::f64::consts::PI - 2.0 * rate.sqrt().asin();
            if power_of(h_max, users, z) < power {
                return Err(PowerError::Unreachable(format!(
                    "{users} users per arm cannot detect any rise from a rate of {rate} with \
                     power {power}"
                )));
            }
            solve_increasing(|h| power_of(h, users, z), power, 0.0, h_max)
        }
        Baseline::Mean { .. } => {
            let mut hi = 1.0;
            while power_of(hi, users, z) < power {
                hi *= 2.0;
            }
            solve_increasing(|d| power_of(d, users, z), power, 0.0, hi)
        }
    };
    let mde = match baseline {
        Baseline::Proportion { rate } => (rate.sqrt().asin() + d / 2.0).sin().powi(2) - rate,
        Baseline::Mean { sd, .. } => d * sd,
    };
    Ok(plan(baseline, per, mde, d, users))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_both_directions_agree() {
        let base = Baseline::Proportion { rate: 0.05 };
        let p = users_per_arm(base, 0.01, 0.05, 0.8, 2).unwrap();
        let back = minimum_detectable_effect(base, p.users_per_arm_exact, 0.05, 0.8, 2).unwrap();
        assert!((back.mde - 0.01).abs() < 1e-9, "{back:?}");
        // More arms: a stricter alpha per comparison, more users.
        let three = users_per_arm(base, 0.01, 0.05, 0.8, 3).unwrap();
        assert!(three.users_per_arm > p.users_per_arm);
        assert_eq!(three.alpha_per_comparison, 0.025);
    }

    #[test]
    fn power_refuses_out_of_range() {
        let base = Baseline::Proportion { rate: 0.05 };
        assert!(users_per_arm(base, 0.0, 0.05, 0.8, 2).is_err());
        assert!(users_per_arm(base, 0.99, 0.05, 0.8, 2).is_err());
        assert!(users_per_arm(base, 0.01, 1.5, 0.8, 2).is_err());
        assert!(users_per_arm(base, 0.01, 0.05, 0.8, 1).is_err());
        assert!(minimum_detectable_effect(base, 3.0, 0.05, 0.99, 2).is_err());
    }
}
