//! Uplift-model evaluation metrics, reproducing scikit-uplift 0.5 (`sklift.metrics`) exactly:
//! the uplift and Qini curves, their normalised areas and uplift at the top `k` fraction.
//!
//! Conventions shared with sklift:
//! * observations are ranked by predicted uplift, highest first; ties keep the order of
//!   `np.argsort(uplift, kind="mergesort")[::-1]`, i.e. among equal scores the observation that
//!   comes *later* in the input ranks first (this matters only for [`uplift_at_k`]);
//! * curves get one point per distinct score (the end of each run of ties), plus `(0, 0)`;
//! * both the outcome and the treatment flag must take both values somewhere in the data, or sklift
//!   raises `ValueError` (here: [`CoreError::InvalidData`]);
//! * where sklift's result is NaN or infinite (0/0 normalisation, an empty group in the top `k`)
//!   the functions return `Ok(None)`.

use std::cmp::Ordering;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// One scored observation of an uplift experiment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpliftObservation {
    /// Observed binary outcome (converted or not).
    pub y_true: bool,
    /// The model's predicted uplift (any finite score; only the order matters).
    pub uplift: f64,
    /// Whether the observation was in the treatment group (`false`: control).
    pub treated: bool,
}

/// Points of an uplift or Qini curve: `x` is the number of observations targeted (the top `x`
/// by predicted uplift), `y` the curve value there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Number of observations targeted, increasing from 0 to `n`.
    pub x: Vec<f64>,
    /// Curve value at each `x`.
    pub y: Vec<f64>,
}

/// How [`uplift_at_k`] selects the top `k` fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpliftStrategy {
    /// Take the top `⌊n·k⌋` observations overall, then compare treatment and control inside them.
    Overall,
    /// Take the top `⌊n_treatment·k⌋` treated and the top `⌊n_control·k⌋` control observations
    /// separately.
    ByGroup,
}

impl FromStr for UpliftStrategy {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overall" => Ok(UpliftStrategy::Overall),
            "by_group" => Ok(UpliftStrategy::ByGroup),
            other => Err(CoreError::InvalidParameter(format!(
                "unknown uplift strategy '{other}' (expected 'overall' or 'by_group')"
            ))),
        }
    }
}

/// Checks what sklift's `check_is_binary` checks, plus finite scores.
fn validate(observations: &[UpliftObservation]) -> Result<()> {
    if observations.is_empty() {
        return Err(CoreError::InvalidData(
            "uplift metrics need at least one observation".into(),
        ));
    }
    if let Some(bad) = observations.iter().find(|o| !o.uplift.is_finite()) {
        return Err(CoreError::InvalidData(format!(
            "uplift scores must be finite, got {}",
            bad.uplift
        )));
    }
    let treated = observations.iter().filter(|o| o.treated).count();
    if treated == 0 || treated == observations.len() {
        return Err(CoreError::InvalidData(
            "uplift metrics need both treated and control observations".into(),
        ));
    }
    let positives = observations.iter().filter(|o| o.y_true).count();
    if positives == 0 || positives == observations.len() {
        return Err(CoreError::InvalidData(
            "uplift metrics need both positive and negative outcomes".into(),
        ));
    }
    Ok(())
}

/// Indices ranked as sklift ranks them: `np.argsort(scores, kind="mergesort")[::-1]`, i.e. by
/// score descending and, among equal scores, by index descending. Scores must be finite.
fn rank_descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable ascending sort (equal scores keep input order), then reverse.
    order.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap_or(Ordering::Equal));
    order.reverse();
    order
}

/// Cumulative counts at the end of each run of tied scores, as in sklift's curve functions.
struct Thresholds {
    /// Observations targeted (`num_all`).
    num_all: Vec<f64>,
    /// Treated observations targeted.
    num_treated: Vec<f64>,
    /// Positive outcomes among the treated targeted.
    y_treated: Vec<f64>,
    /// Positive outcomes among the control targeted.
    y_control: Vec<f64>,
}

fn thresholds(observations: &[UpliftObservation], scores: &[f64]) -> Thresholds {
    let order = rank_descending(scores);
    let mut t = Thresholds {
        num_all: Vec::new(),
        num_treated: Vec::new(),
        y_treated: Vec::new(),
        y_control: Vec::new(),
    };
    let (mut n_t, mut y_t, mut y_c) = (0u64, 0u64, 0u64);
    for (pos, &i) in order.iter().enumerate() {
        let o = &observations[i];
        if o.treated {
            n_t += 1;
            y_t += u64::from(o.y_true);
        } else {
            y_c += u64::from(o.y_true);
        }
        let last_of_run = order
            .get(pos + 1)
            .is_none_or(|&next| scores[next] != scores[i]);
        if last_of_run {
            t.num_all.push((pos + 1) as f64);
            t.num_treated.push(n_t as f64);
            t.y_treated.push(y_t as f64);
            t.y_control.push(y_c as f64);
        }
    }
    t
}

/// `a / b`, or 0 where `b = 0` (numpy `divide(..., out=zeros, where=b != 0)`).
fn divide_or_zero(a: f64, b: f64) -> f64 {
    if b != 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Prepends the `(0, 0)` point.
fn curve_from(num_all: Vec<f64>, values: Vec<f64>) -> Curve {
    let mut x = Vec::with_capacity(num_all.len() + 1);
    let mut y = Vec::with_capacity(values.len() + 1);
    x.push(0.0);
    y.push(0.0);
    x.extend(num_all);
    y.extend(values);
    Curve { x, y }
}

fn uplift_curve_for(observations: &[UpliftObservation], scores: &[f64]) -> Curve {
    let t = thresholds(observations, scores);
    let values = (0..t.num_all.len())
        .map(|i| {
            let n_c = t.num_all[i] - t.num_treated[i];
            (divide_or_zero(t.y_treated[i], t.num_treated[i]) - divide_or_zero(t.y_control[i], n_c))
                * t.num_all[i]
        })
        .collect();
    curve_from(t.num_all, values)
}

fn qini_curve_for(observations: &[UpliftObservation], scores: &[f64]) -> Curve {
    let t = thresholds(observations, scores);
    let values = (0..t.num_all.len())
        .map(|i| {
            let n_c = t.num_all[i] - t.num_treated[i];
            t.y_treated[i] - t.y_control[i] * divide_or_zero(t.num_treated[i], n_c)
        })
        .collect();
    curve_from(t.num_all, values)
}

fn scores(observations: &[UpliftObservation]) -> Vec<f64> {
    observations.iter().map(|o| o.uplift).collect()
}

/// The uplift curve (sklift `uplift_curve`): at each distinct score, with the top `x` targeted,
/// `y = (treated responders / treated − control responders / control) · x`, a rate taken as 0
/// where its group is empty.
pub fn uplift_curve(observations: &[UpliftObservation]) -> Result<Curve> {
    validate(observations)?;
    Ok(uplift_curve_for(observations, &scores(observations)))
}

/// The best achievable uplift curve (sklift `perfect_uplift_curve`): the uplift curve of the
/// score `2·[y_true = treated] + s`, where `s = y_true` if control responders outnumber treated
/// non-responders and `s = treated` otherwise.
pub fn perfect_uplift_curve(observations: &[UpliftObservation]) -> Result<Curve> {
    validate(observations)?;
    Ok(perfect_uplift_curve_unchecked(observations))
}

fn perfect_uplift_curve_unchecked(observations: &[UpliftObservation]) -> Curve {
    let control_responders = observations
        .iter()
        .filter(|o| o.y_true && !o.treated)
        .count();
    let treated_non_responders = observations
        .iter()
        .filter(|o| !o.y_true && o.treated)
        .count();
    let use_outcome = control_responders > treated_non_responders;
    let perfect: Vec<f64> = observations
        .iter()
        .map(|o| {
            let summand = if use_outcome { o.y_true } else { o.treated };
            2.0 * f64::from(u8::from(o.y_true == o.treated)) + f64::from(u8::from(summand))
        })
        .collect();
    uplift_curve_for(observations, &perfect)
}

/// The Qini curve (sklift `qini_curve`): at each distinct score, with the top `x` targeted,
/// `y = treated responders − control responders · treated / control` (the ratio taken as 0
/// while no control is targeted).
pub fn qini_curve(observations: &[UpliftObservation]) -> Result<Curve> {
    validate(observations)?;
    Ok(qini_curve_for(observations, &scores(observations)))
}

/// The best achievable Qini curve with negative effects (sklift `perfect_qini_curve`,
/// `negative_effect=True`): the Qini curve of the score `+1` for treated responders, `−1` for
/// control responders and `0` otherwise.
pub fn perfect_qini_curve(observations: &[UpliftObservation]) -> Result<Curve> {
    validate(observations)?;
    Ok(perfect_qini_curve_unchecked(observations))
}

fn perfect_qini_curve_unchecked(observations: &[UpliftObservation]) -> Curve {
    let perfect: Vec<f64> = observations
        .iter()
        .map(|o| match (o.y_true, o.treated) {
            (true, true) => 1.0,
            (true, false) => -1.0,
            _ => 0.0,
        })
        .collect();
    qini_curve_for(observations, &perfect)
}

/// Trapezoidal area under a curve with increasing `x` (sklearn `auc`, numpy `trapezoid`).
fn trapezoid(curve: &Curve) -> f64 {
    curve
        .x
        .windows(2)
        .zip(curve.y.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
        .sum()
}

/// `(AUC(actual) − AUC(random)) / (AUC(perfect) − AUC(random))`, where the random curve is the
/// straight line from `(0, 0)` to the perfect curve's last point. `None` when the denominator is 0.
fn normalised_area(actual: &Curve, perfect: &Curve) -> Option<f64> {
    let (&x_end, &y_end) = (perfect.x.last()?, perfect.y.last()?);
    let random = trapezoid(&Curve {
        x: vec![0.0, x_end],
        y: vec![0.0, y_end],
    });
    let score = (trapezoid(actual) - random) / (trapezoid(perfect) - random);
    score.is_finite().then_some(score)
}

/// Normalised area under the uplift curve (sklift `uplift_auc_score`):
/// `(AUC(uplift curve) − AUC(random)) / (AUC(perfect uplift curve) − AUC(random))`, where the
/// random curve is the line from `(0, 0)` to the curves' common end point
/// `(n, overall uplift · n)`.
///
/// `Err` for unusable input (empty, a non-finite score, only one treatment group or one outcome
/// value); `Ok(None)` when the perfect and random areas coincide (sklift returns NaN or ±inf).
pub fn uplift_auc_score(observations: &[UpliftObservation]) -> Result<Option<f64>> {
    validate(observations)?;
    let actual = uplift_curve_for(observations, &scores(observations));
    let perfect = perfect_uplift_curve_unchecked(observations);
    Ok(normalised_area(&actual, &perfect))
}

/// Normalised area under the Qini curve, the Qini coefficient (sklift `qini_auc_score` with its
/// default `negative_effect=True`):
/// `(AUC(Qini curve) − AUC(random)) / (AUC(perfect Qini curve) − AUC(random))`.
///
/// `Err` for unusable input (as [`uplift_auc_score`]); `Ok(None)` when the perfect and random
/// areas coincide.
pub fn qini_auc_score(observations: &[UpliftObservation]) -> Result<Option<f64>> {
    validate(observations)?;
    let actual = qini_curve_for(observations, &scores(observations));
    let perfect = perfect_qini_curve_unchecked(observations);
    Ok(normalised_area(&actual, &perfect))
}

/// Mean outcome of the selected observations, `None` when none is selected (numpy: NaN).
fn response_rate<'a>(selected: impl Iterator<Item = &'a UpliftObservation>) -> Option<f64> {
    let (count, positives) =
        selected.fold((0u64, 0u64), |(c, p), o| (c + 1, p + u64::from(o.y_true)));
    (count > 0).then(|| positives as f64 / count as f64)
}

/// Uplift at the top `k` fraction (sklift `uplift_at_k` with a float `k`): the treated response
/// rate minus the control response rate among the top-ranked observations chosen by `strategy`
/// (see [`UpliftStrategy`]; sizes are `⌊n·k⌋`, truncated as Python's `int()` does).
///
/// `Err(InvalidParameter)` unless `0 < k < 1`; `Err(InvalidData)` for unusable input (as
/// [`uplift_auc_score`]); `Ok(None)` when the selection holds no treated or no control
/// observation (sklift: NaN).
pub fn uplift_at_k(
    observations: &[UpliftObservation],
    k: f64,
    strategy: UpliftStrategy,
) -> Result<Option<f64>> {
    if !(k > 0.0 && k < 1.0) {
        return Err(CoreError::InvalidParameter(format!(
            "k must be a fraction in (0, 1), got {k}"
        )));
    }
    validate(observations)?;
    let order = rank_descending(&scores(observations));
    let ranked = order.iter().map(|&i| &observations[i]);
    let (treated, control) = match strategy {
        UpliftStrategy::Overall => {
            let size = (observations.len() as f64 * k) as usize;
            let top: Vec<&UpliftObservation> = ranked.take(size).collect();
            (
                response_rate(top.iter().copied().filter(|o| o.treated)),
                response_rate(top.iter().copied().filter(|o| !o.treated)),
            )
        }
        UpliftStrategy::ByGroup => {
            let n_treated = observations.iter().filter(|o| o.treated).count();
            let n_control = observations.len() - n_treated;
            let size_treated = (n_treated as f64 * k) as usize;
            let size_control = (n_control as f64 * k) as usize;
            (
                response_rate(ranked.clone().filter(|o| o.treated).take(size_treated)),
                response_rate(ranked.filter(|o| !o.treated).take(size_control)),
            )
        }
    };
    Ok(treated.zip(control).map(|(t, c)| t - c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(rows: &[(u8, f64, u8)]) -> Vec<UpliftObservation> {
        rows.iter()
            .map(|&(y, s, t)| UpliftObservation {
                y_true: y == 1,
                uplift: s,
                treated: t == 1,
            })
            .collect()
    }

    #[test]
    fn stats_uplift_rank_matches_numpy_mergesort_reversed() {
        // np.argsort([0.5, 0.1, 0.5, 0.9, 0.1], kind="mergesort")[::-1] == [3, 2, 0, 4, 1]
        assert_eq!(
            rank_descending(&[0.5, 0.1, 0.5, 0.9, 0.1]),
            vec![3, 2, 0, 4, 1]
        );
    }

    #[test]
    fn stats_uplift_curves_small_example() {
        let data = obs(&[
            (1, 0.9, 1),
            (0, 0.8, 0),
            (1, 0.8, 1),
            (0, 0.3, 0),
            (1, 0.1, 0),
            (0, 0.1, 1),
        ]);
        let q = qini_curve(&data).unwrap();
        // thresholds after 1, 3, 4 and 6 observations
        assert_eq!(q.x, vec![0.0, 1.0, 3.0, 4.0, 6.0]);
        // at 6: treated 3 (2 responders), control 3 (1 responder): 2 − 1·3/3 = 1
        assert_eq!(q.y, vec![0.0, 1.0, 2.0, 2.0, 1.0]);
        let u = uplift_curve(&data).unwrap();
        assert_eq!(u.y.last(), Some(&((2.0 / 3.0 - 1.0 / 3.0) * 6.0)));
        let score = qini_auc_score(&data).unwrap().unwrap();
        assert!(score > 0.0 && score <= 1.0);
    }

    #[test]
    fn stats_uplift_invalid_input() {
        assert!(qini_auc_score(&[]).is_err());
        assert!(uplift_auc_score(&obs(&[(1, 0.1, 1), (0, 0.2, 1)])).is_err()); // no control
        assert!(uplift_auc_score(&obs(&[(1, 0.1, 1), (1, 0.2, 0)])).is_err()); // one outcome
        assert!(qini_auc_score(&obs(&[(1, f64::NAN, 1), (0, 0.2, 0)])).is_err());
        let ok = obs(&[(1, 0.1, 1), (0, 0.2, 0)]);
        assert!(uplift_at_k(&ok, 1.0, UpliftStrategy::Overall).is_err());
        assert!(uplift_at_k(&ok, f64::NAN, UpliftStrategy::Overall).is_err());
        // top ⌊2·0.4⌋ = 0 observations: both rates undefined
        assert_eq!(uplift_at_k(&ok, 0.4, UpliftStrategy::Overall), Ok(None));
        assert_eq!(
            "by_group".parse::<UpliftStrategy>(),
            Ok(UpliftStrategy::ByGroup)
        );
        assert!("top".parse::<UpliftStrategy>().is_err());
    }
}
