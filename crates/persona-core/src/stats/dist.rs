//! The distribution functions the tests need: tails and critical values of the normal, Student's t
//! and chi-squared distributions.
//!
//! `statrs` asserts on out-of-range quantile arguments and returns `Err` for bad parameters; every
//! function here instead returns `None` for arguments where the quantity is undefined, so callers
//! can propagate "undefined" as a JSON `null`. The normal and chi-squared functions delegate to
//! `statrs` (relative accuracy ~1e-10, limited by its `erfc`); Student's t is evaluated here (see
//! [`t_sf`]) because `statrs` loses accuracy in proportion to the degrees of freedom, which are
//! large for Welch tests on big campaigns.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};
use statrs::function::erf::erfc;
use statrs::function::gamma::ln_gamma;

/// `x > 0`, false for NaN (spelled out so NaN handling is explicit at call sites).
pub(crate) fn positive(x: f64) -> bool {
    x > 0.0
}

/// Upper tail `P(Z > z)` of the standard normal distribution (scipy `norm.sf`).
pub(crate) fn normal_sf(z: f64) -> Option<f64> {
    if z.is_nan() {
        return None;
    }
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some(normal.sf(z))
}

/// Two-sided p-value `2·P(Z > |z|)` of a standard normal statistic.
pub(crate) fn normal_two_sided_p(z: f64) -> Option<f64> {
    normal_sf(z.abs()).map(|p| 2.0 * p)
}

/// The critical value `z` with `P(Z > z) = alpha / 2` (scipy `norm.isf(alpha / 2)`), for `alpha`
/// in `(0, 1)`.
pub(crate) fn normal_two_sided_critical(alpha: f64) -> Option<f64> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    // isf(alpha/2) = -ppf(alpha/2); computing through the lower tail avoids forming 1 - alpha/2.
    let normal = Normal::new(0.0, 1.0).ok()?;
    let z = -normal.inverse_cdf(alpha / 2.0);
    z.is_finite().then_some(z)
}

/// `ln Γ(a + 1/2) − ln Γ(a)`, without the cancellation of two huge `ln Γ` values for large `a`.
fn ln_gamma_half_ratio(a: f64) -> f64 {
    if a < 50.0 {
        ln_gamma(a + 0.5) - ln_gamma(a)
    } else {
        // Difference of the Stirling series ln Γ(z) = (z − ½)ln z − z + ½ln 2π + S(z), with
        // S(z) = 1/(12z) − 1/(360z³) + 1/(1260z⁵) (next term < 1e-15 for z ≥ 50).
        let series = |z: f64| {
            let z2 = z * z;
            (1.0 / 12.0 - (1.0 / 360.0 - 1.0 / (1260.0 * z2)) / z2) / z
        };
        (a - 0.5) * (0.5 / a).ln_1p() + 0.5 * (a + 0.5).ln() - 0.5 + series(a + 0.5) - series(a)
    }
}

/// Continued fraction of the incomplete beta function (modified Lentz), converging for
/// `x < (a + 1)/(a + b + 2)` in `O(sqrt(max(a, b)))` iterations.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> Option<f64> {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - qab * x / qap);
    let mut h = d;
    let max_iterations = (20.0 * a.max(b).sqrt()) as u64 + 200;
    for m in 1..=max_iterations {
        let m = m as f64;
        let m2 = 2.0 * m;
        let even = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        h *= d * c;
        let odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON {
            return h.is_finite().then_some(h);
        }
    }
    None
}

/// Degrees of freedom from which [`t_sf`] uses the large-`a` expansion [`bgrat_half`] instead of
/// the continued fraction (both are accurate to ~1e-13 relative around this point).
const T_EXPANSION_FROM_DF: f64 = 30.0;

/// Upper tail `P(T > t)` of Student's t with `df > 0` degrees of freedom.
///
/// `P(T > t) = ½·I_x(df/2, ½)` with `x = df/(df + t²)` for `t > 0`. `statrs` evaluates this with a
/// continued fraction that is ill-conditioned for `x` near 1 and large `df` (relative error about
/// `1e-17·df`, 1e-6 by `df = 1e11`, and it forms `ln Γ(a + b) − ln Γ(a)` from two huge numbers).
/// Here, as in Boost (which scipy uses):
/// * `df < 30`: the continued fraction on the side where it converges, with `x`, `1 − x` and their
///   logarithms formed without cancellation;
/// * `df ≥ 30`: DiDonato & Morris's asymptotic expansion for large `a` and small `b` (BGRAT),
///   whose leading term for `b = ½` is the normal tail `erfc(√u)`.
///
/// Accurate to ~1e-13 relative for `df < 30` and to the accuracy of `statrs`' `erfc` (~1e-10
/// relative) above, uniformly in `df` (tested against scipy up to `df = 1e11`).
pub(crate) fn t_sf(t: f64, df: f64) -> Option<f64> {
    if t.is_nan() || !positive(df) {
        return None;
    }
    if df.is_infinite() {
        return normal_sf(t);
    }
    if t < 0.0 {
        return t_sf(-t, df).map(|p| 1.0 - p);
    }
    if t == 0.0 {
        return Some(0.5);
    }
    let t2 = t * t;
    if !t2.is_finite() {
        return Some(0.0);
    }
    let a = 0.5 * df;
    // ln x = ln(df/(df + t²)), computed without forming x.
    let ln_x = -(t2 / df).ln_1p();
    let tail = if df >= T_EXPANSION_FROM_DF {
        0.5 * bgrat_half(a, ln_x)
    } else {
        let b = 0.5;
        let x = df / (df + t2);
        let y = t2 / (df + t2);
        let ln_y = -(df / t2).ln_1p();
        let ln_beta = 0.5 * std::f64::consts::PI.ln() - ln_gamma_half_ratio(a);
        let front = (a * ln_x + b * ln_y - ln_beta).exp();
        if x < (a + 1.0) / (a + b + 2.0) {
            0.5 * front * beta_continued_fraction(a, b, x)? / a
        } else {
            0.5 * (1.0 - front * beta_continued_fraction(b, a, y)? / b)
        }
    };
    tail.is_finite().then(|| tail.clamp(0.0, 0.5))
}

/// `I_x(a, ½)` for large `a` (≥ 15) by DiDonato & Morris (1992), Algorithm 708, BGRAT (eqs. 9–9.6),
/// as in Boost's `beta_small_b_large_a_series`, specialised to `b = ½` where the incomplete gamma
/// function `Q(½, u)` is `erfc(√u)`. Takes `ln x`.
fn bgrat_half(a: f64, ln_x: f64) -> f64 {
    const TERMS: usize = 30;
    let b = 0.5;
    let bm1 = b - 1.0;
    let big_t = a + bm1 / 2.0;
    let u = -big_t * ln_x;
    // h = u^b·e^(−u)/Γ(b); below the f64 range the tail is 0 for every purpose.
    let ln_h = b * u.ln() - u - 0.5 * std::f64::consts::PI.ln();
    let h = ln_h.exp();
    if !positive(h) {
        return 0.0;
    }
    // prefix = h·Γ(a + b)/Γ(a)/T^b
    let prefix = (ln_h + ln_gamma_half_ratio(a) - b * big_t.ln()).exp();
    // J_0 = Q(b, u)/h
    let mut j = erfc(u.sqrt()) / h;
    let mut sum = prefix * j;
    // Odd factorials (2m + 1)! for m = 0..TERMS.
    let mut odd_factorial = [1.0_f64; TERMS + 1];
    let mut f = 1.0;
    for (m, slot) in odd_factorial.iter_mut().enumerate() {
        if m > 0 {
            f *= (2 * m) as f64 * (2 * m + 1) as f64;
        }
        *slot = f;
    }
    let mut p = [0.0_f64; TERMS];
    p[0] = 1.0;
    let half_ln_x_sq = (ln_x / 2.0) * (ln_x / 2.0);
    let mut ln_x_power = 1.0;
    let four_t_sq = 4.0 * big_t * big_t;
    let mut b2n = b;
    for n in 1..TERMS {
        // p_n (eq. 9.3)
        let mut acc = 0.0;
        for m in 1..n {
            acc += (m as f64 * b - n as f64) * p[n - m] / odd_factorial[m];
        }
        p[n] = acc / n as f64 + bm1 / odd_factorial[n];
        // J_n from J_{n−1} (eq. 9.6)
        j = (b2n * (b2n + 1.0) * j + (u + b2n + 1.0) * ln_x_power) / four_t_sq;
        ln_x_power *= half_ln_x_sq;
        b2n += 2.0;
        let term = prefix * p[n] * j;
        sum += term;
        if !term.is_finite() || term.abs() <= f64::EPSILON * sum.abs() / 4.0 {
            break;
        }
    }
    sum
}

/// Density of Student's t with `df > 0` degrees of freedom.
fn t_pdf(t: f64, df: f64) -> f64 {
    let a = 0.5 * df;
    let ln_pdf = ln_gamma_half_ratio(a)
        - 0.5 * (df * std::f64::consts::PI).ln()
        - (a + 0.5) * (t * t / df).ln_1p();
    ln_pdf.exp()
}

/// Two-sided p-value `2·P(T_df > |t|)` of Student's t with (possibly fractional) `df > 0`.
pub(crate) fn t_two_sided_p(t: f64, df: f64) -> Option<f64> {
    t_sf(t.abs(), df).map(|p| (2.0 * p).min(1.0))
}

/// The critical value `t` with `P(T_df > t) = alpha / 2` (scipy `t.isf(alpha / 2, df)`), for
/// `alpha` in `(0, 1)` and `df > 0`.
///
/// Starts from the `statrs` quantile (small `df`) or the Cornish–Fisher expansion around the
/// normal quantile (large `df`) and polishes with Newton steps on [`t_sf`], so it is as accurate
/// as [`t_sf`] (~1e-10 relative against scipy).
pub(crate) fn t_two_sided_critical(alpha: f64, df: f64) -> Option<f64> {
    let z = normal_two_sided_critical(alpha)?;
    if !positive(df) {
        return None;
    }
    if df.is_infinite() {
        return Some(z);
    }
    let target = alpha / 2.0;
    let mut t = if df >= 20.0 {
        let z3 = z * z * z;
        z + (z3 + z) / (4.0 * df) + (5.0 * z3 * z * z + 16.0 * z3 + 3.0 * z) / (96.0 * df * df)
    } else {
        -StudentsT::new(0.0, 1.0, df).ok()?.inverse_cdf(target)
    };
    if !(t.is_finite() && t > 0.0) {
        return None;
    }
    let mut residual = (t_sf(t, df)? - target).abs();
    for _ in 0..100 {
        let density = t_pdf(t, df);
        if !positive(density) || residual <= target * 1e-15 {
            break;
        }
        let step = (t_sf(t, df)? - target) / density;
        // Never step to or past zero (the upper quantile is positive).
        let candidate = if t + step > 0.0 { t + step } else { t / 2.0 };
        let candidate_residual = match t_sf(candidate, df) {
            Some(p) if candidate.is_finite() => (p - target).abs(),
            _ => break,
        };
        if candidate_residual >= residual {
            break;
        }
        t = candidate;
        residual = candidate_residual;
    }
    Some(t)
}

/// Upper tail `P(X > x)` of the chi-squared distribution with `df > 0` degrees of freedom.
pub(crate) fn chi2_sf(x: f64, df: f64) -> Option<f64> {
    if x.is_nan() || !positive(df) {
        return None;
    }
    let dist = ChiSquared::new(df).ok()?;
    let p = dist.sf(x);
    p.is_finite().then(|| p.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn stats_dist_t_quantiles_match_scipy() {
        // (df, alpha, scipy.stats.t.isf(alpha / 2, df))
        let cases = [
            (0.5, 0.5, 1.5537739740300383),
            (0.5, 0.05, 164.55767348048846),
            (0.5, 0.001, 411396.4625261712),
            (1.0, 0.5, 1.0000000000000002),
            (1.0, 0.05, 12.706204736174705),
            (1.0, 0.001, 636.6192487687196),
            (1.5, 0.5, 0.8725946625415716),
            (1.5, 0.05, 6.016663104427933),
            (1.5, 0.001, 82.84744670365761),
            (2.7, 0.5, 0.7759862837452676),
            (2.7, 0.05, 3.3921483831737524),
            (2.7, 0.001, 15.635772863173868),
            (10.0, 0.5, 0.6998120613124317),
            (10.0, 0.05, 2.2281388519862753),
            (10.0, 0.001, 4.586893858702636),
            (57.3, 0.5, 0.6787955181478587),
            (57.3, 0.05, 2.002238268231336),
            (57.3, 0.001, 3.468579576490014),
            (1000.0, 0.5, 0.6747351646070093),
            (1000.0, 0.05, 1.9623390808264085),
            (1000.0, 0.001, 3.3002826484239134),
            (100000.0, 0.5, 0.674492203553292),
            (100000.0, 0.05, 1.95998770753461),
            (100000.0, 0.001, 3.290624031411883),
            (10000000.0, 0.5, 0.6744897747295749),
            (10000000.0, 0.05, 1.9599642217672055),
            (10000000.0, 0.001, 3.2905277044652226),
            (1000000000.0, 0.5, 0.6744897504414163),
            (1000000000.0, 0.05, 1.9599639869123253),
            (1000000000.0, 0.001, 3.2905267412216257),
            (100000000000.0, 0.5, 0.6744897501985351),
            (100000000000.0, 0.05, 1.9599639845637769),
            (100000000000.0, 0.001, 3.290526731589192),
        ];
        let mut failures = Vec::new();
        for (df, alpha, expected) in cases {
            let got = t_two_sided_critical(alpha, df).expect("defined");
            if !close(got, expected, 1e-9) {
                failures.push(format!("df={df} alpha={alpha}: {got} vs {expected}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn stats_dist_t_tails_match_scipy() {
        // (df, t, scipy.stats.t.sf(t, df))
        let cases = [
            (0.5, 0.0, 0.5),
            (0.5, 0.001, 0.49973032383424376),
            (0.5, 0.3, 0.42242957606524545),
            (0.5, 1.0, 0.30112161084132205),
            (0.5, 1.7, 0.24006756495788475),
            (0.5, 2.1, 0.21773463773300644),
            (0.5, 5.0, 0.14299570157942937),
            (0.5, 40.0, 0.050704899964747176),
            (1.0, 0.0, 0.5),
            (1.0, 0.001, 0.49968169021990794),
            (1.0, 0.3, 0.4072264209222577),
            (1.0, 1.0, 0.25000000000000006),
            (1.0, 1.7, 0.1692530273303327),
            (1.0, 2.1, 0.141463028121509),
            (1.0, 5.0, 0.0628329581890012),
            (1.0, 40.0, 0.007956089912025812),
            (1.5, 0.0, 0.5),
            (1.5, 0.001, 0.4996592651133599),
            (1.5, 0.3, 0.40023609840179253),
            (1.5, 1.0, 0.22556768363835517),
            (1.5, 1.7, 0.1353311220755206),
            (1.5, 2.1, 0.10567271776471907),
            (1.5, 5.0, 0.032687883810578106),
            (1.5, 40.0, 0.0014898121954656225),
            (2.7, 0.0, 0.5),
            (2.7, 0.001, 0.4996356622560273),
            (2.7, 0.3, 0.3928832663472241),
            (2.7, 1.0, 0.19916217361038638),
            (2.7, 1.7, 0.09886505978263954),
            (2.7, 2.1, 0.06829068542518327),
            (2.7, 5.0, 0.009850419463231919),
            (2.7, 40.0, 3.997819945096109e-05),
            (10.0, 0.0, 0.5),
            (10.0, 0.001, 0.4996108916873705),
            (10.0, 0.3, 0.3851603037828993),
            (10.0, 1.0, 0.17044656615103),
            (10.0, 1.7, 0.059984672954510175),
            (10.0, 2.1, 0.031038622101109265),
            (10.0, 5.0, 0.00026866680137822634),
            (10.0, 40.0, 1.1404288715428768e-12),
            (57.3, 0.0, 0.5),
            (57.3, 0.001, 0.4996027944933081),
            (57.3, 0.3, 0.3826314083003724),
            (57.3, 1.0, 0.16075745245186568),
            (57.3, 1.7, 0.04727680791043222),
            (57.3, 2.1, 0.02007127793569189),
            (57.3, 5.0, 2.8717180908898663e-06),
            (57.3, 40.0, 7.287930658610874e-44),
            (1000.0, 0.0, 0.5),
            (1000.0, 0.001, 0.4996011575092264),
            (1000.0, 0.3, 0.38211975208362203),
            (1000.0, 1.0, 0.15877620904233627),
            (1000.0, 1.7, 0.04472094347962005),
            (1000.0, 2.1, 0.017989437155390985),
            (1000.0, 5.0, 3.3836281823243174e-07),
            (1000.0, 40.0, 5.239426077586636e-210),
            (100000.0, 0.0, 0.5),
            (100000.0, 0.001, 0.4996010587834439),
            (100000.0, 0.3, 0.3820888895951688),
            (100000.0, 1.0, 0.1586564637820551),
            (100000.0, 1.7, 0.04456701762433149),
            (100000.0, 2.1, 0.017865669816148417),
            (100000.0, 5.0, 2.8713508393208397e-07),
            (100000.0, 40.0, 0.0),
            (10000000.0, 0.0, 0.5),
            (10000000.0, 0.001, 0.4996010577960625),
            (10000000.0, 0.3, 0.3820885809288926),
            (10000000.0, 1.0, 0.15865526602999303),
            (10000000.0, 1.7, 0.044565478307206724),
            (10000000.0, 2.1, 0.017864433055258318),
            (10000000.0, 5.0, 2.866564037504268e-07),
            (10000000.0, 40.0, 0.0),
            (1000000000.0, 0.0, 0.5),
            (1000000000.0, 0.001, 0.4996010577861887),
            (1000000000.0, 0.3, 0.3820885778422259),
            (1000000000.0, 1.0, 0.1586552540524424),
            (1000000000.0, 1.7, 0.044565462914029685),
            (1000000000.0, 2.1, 0.017864420687740964),
            (1000000000.0, 5.0, 2.8665162019758096e-07),
            (1000000000.0, 40.0, 0.0),
            (100000000000.0, 0.0, 0.5),
            (100000000000.0, 0.001, 0.49960105778608993),
            (100000000000.0, 0.3, 0.38208857781135913),
            (100000000000.0, 1.0, 0.15865525393266683),
            (100000000000.0, 1.7, 0.044565462760097894),
            (100000000000.0, 2.1, 0.017864420564065796),
            (100000000000.0, 5.0, 2.866515723623769e-07),
            (100000000000.0, 40.0, 0.0),
        ];
        let mut failures = Vec::new();
        for (df, t, expected) in cases {
            let got = t_sf(t, df).expect("defined");
            if !close(got, expected, 1e-9) {
                failures.push(format!("df={df} t={t}: {got} vs {expected}"));
            }
            let lower = t_sf(-t, df).expect("defined");
            if !close(lower, 1.0 - expected, 1e-9) {
                failures.push(format!("df={df} t=-{t}: {lower} vs 1 - {expected}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn stats_dist_chi2_and_normal() {
        assert!(close(
            chi2_sf(3.2, 1.0).unwrap(),
            0.07363827012030258,
            1e-10
        ));
        assert!(close(
            chi2_sf(250.0, 3.0).unwrap(),
            6.543750030967994e-54,
            1e-9
        ));
        assert!(close(
            chi2_sf(12.5, 9.0).unwrap(),
            0.18656597485845106,
            1e-10
        ));
        assert!(close(
            normal_two_sided_critical(0.05).unwrap(),
            1.959963984540054,
            1e-14
        ));
        assert_eq!(normal_two_sided_critical(0.0), None);
        assert_eq!(normal_two_sided_critical(f64::NAN), None);
        assert_eq!(t_two_sided_critical(0.05, 0.0), None);
        assert_eq!(t_two_sided_p(f64::NAN, 3.0), None);
        assert_eq!(chi2_sf(1.0, 0.0), None);
    }
}
