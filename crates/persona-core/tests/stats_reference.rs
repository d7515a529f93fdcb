//! Checks `persona_core::stats` against reference values computed with scipy, statsmodels and
//! scikit-uplift by `scripts/stats_reference.py` (committed as `tests/data/stats_reference.json`,
//! so no Python is needed here).
//!
//! Tolerance: every value must satisfy `|actual − expected| ≤ 1e-6 · max(1, |expected|)`, i.e. an
//! absolute 1e-6 for values of magnitude up to 1 (rates, lifts, interval limits, normalised
//! areas) and a relative 1e-6 above (statistics, degrees of freedom, curve values). p-values are
//! held to the stricter purely relative `|actual − expected| ≤ 1e-6 · |expected|` (plus 1e-300
//! for underflow), so tiny p-values must match too. A `null` expected value means the reference
//! is undefined (NaN/inf in Python) and the Rust function must return `None`.

use std::path::Path;

use persona_core::stats::{
    campaign_report, chisquare_gof, compare_ratios, diff_confint, qini_auc_score, qini_curve,
    ratio_confint, relative_lift_confint, two_proportion_ztest, uplift_at_k, uplift_auc_score,
    uplift_curve, welch_confint, welch_ttest, ArmAggregate, Curve, Interval, Moments, RatioMoments,
    UpliftObservation, UpliftStrategy,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stats_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v}"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn cases<'a>(root: &'a Value, section: &str) -> &'a Vec<Value> {
    root[section]
        .as_array()
        .unwrap_or_else(|| panic!("no section {section}"))
}

/// Collects every mismatch so one run reports them all.
#[derive(Default)]
struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    fn value(&mut self, what: &str, actual: f64, expected: f64) {
        self.checked += 1;
        let ok = (actual - expected).abs() <= TOLERANCE * expected.abs().max(1.0);
        if !ok {
            self.failures
                .push(format!("{what}: got {actual:e}, expected {expected:e}"));
        }
    }

    fn p_value(&mut self, what: &str, actual: f64, expected: f64) {
        self.checked += 1;
        let ok = (actual - expected).abs() <= TOLERANCE * expected.abs() + 1e-300;
        if !ok {
            self.failures
                .push(format!("{what}: got p = {actual:e}, expected {expected:e}"));
        }
    }

    /// `expected` is a number or null.
    fn optional(&mut self, what: &str, actual: Option<f64>, expected: &Value) {
        match (actual, expected.as_f64()) {
            (Some(a), Some(e)) => self.value(what, a, e),
            (None, None) => self.checked += 1,
            (a, _) => self
                .failures
                .push(format!("{what}: got {a:?}, expected {expected}")),
        }
    }

    fn optional_p(&mut self, what: &str, actual: Option<f64>, expected: &Value) {
        match (actual, expected.as_f64()) {
            (Some(a), Some(e)) => self.p_value(what, a, e),
            (None, None) => self.checked += 1,
            (a, _) => self
                .failures
                .push(format!("{what}: got {a:?}, expected {expected}")),
        }
    }

    /// `expected` is `[low, high]` or null.
    fn interval(&mut self, what: &str, actual: Option<(f64, f64)>, expected: &Value) {
        match (actual, expected.as_array()) {
            (Some((low, high)), Some(e)) if e.len() == 2 => {
                self.optional(&format!("{what}.low"), Some(low), &e[0]);
                self.optional(&format!("{what}.high"), Some(high), &e[1]);
            }
            (None, None) => self.checked += 1,
            (a, _) => self
                .failures
                .push(format!("{what}: got {a:?}, expected {expected}")),
        }
    }

    fn flag(&mut self, what: &str, actual: bool, expected: &Value) {
        self.checked += 1;
        if expected.as_bool() != Some(actual) {
            self.failures
                .push(format!("{what}: got {actual}, expected {expected}"));
        }
    }

    fn curve(&mut self, what: &str, actual: &Curve, expected: &Value) {
        let xs = expected["x"].as_array().expect("curve x");
        let ys = expected["y"].as_array().expect("curve y");
        if xs.len() != actual.x.len() || ys.len() != actual.y.len() {
            self.failures.push(format!(
                "{what}: {} points, expected {}",
                actual.x.len(),
                xs.len()
            ));
            return;
        }
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            self.optional(&format!("{what}.x[{i}]"), Some(actual.x[i]), x);
            self.optional(&format!("{what}.y[{i}]"), Some(actual.y[i]), y);
        }
    }

    fn finish(self, section: &str) {
        assert!(
            self.failures.is_empty(),
            "{section}: {} of {} values differ from the reference:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n")
        );
        assert!(self.checked > 0, "{section}: nothing checked");
        println!("{section}: {} values match", self.checked);
    }
}

#[test]
fn ratio_delta_method_matches_statsmodels_hc1() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "ratio") {
        let name = s(case, "name");
        let moments = |key: &str| -> RatioMoments {
            serde_json::from_value(case[key].clone()).expect("ratio moments")
        };
        let (t, c) = (moments("treatment"), moments("control"));
        let alpha = f(case, "alpha");
        let w = |field: &str| format!("{name}: {field}");
        check.optional(&w("treatment_rate"), t.ratio(), &case["treatment_rate"]);
        check.optional(&w("control_rate"), c.ratio(), &case["control_rate"]);
        check.optional(&w("var_t"), t.ratio_variance(), &case["var_t"]);
        check.optional(&w("var_c"), c.ratio_variance(), &case["var_c"]);
        let Some(cmp) = compare_ratios(&t, &c, alpha) else {
            check.failures.push(format!("{name}: comparison undefined"));
            continue;
        };
        check.value(
            &w("absolute_lift"),
            cmp.difference,
            f(case, "absolute_lift"),
        );
        check.interval(
            &w("absolute_lift_ci"),
            cmp.difference_ci,
            &case["absolute_lift_ci"],
        );
        let shifted = cmp.ratio_ci.map(|(lo, hi)| (lo - 1.0, hi - 1.0));
        check.interval(&w("relative_lift_ci"), shifted, &case["relative_lift_ci"]);
        check.optional(&w("z"), cmp.z, &case["z"]);
        check.optional_p(&w("p_value"), cmp.p_value, &case["p_value"]);
    }
    check.finish("ratio");
}

#[test]
fn proportions_match_statsmodels() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "proportions") {
        let name = s(case, "name");
        let (x1, n1, x2, n2) = (u(case, "x1"), u(case, "n1"), u(case, "x2"), u(case, "n2"));
        let alpha = f(case, "alpha");
        let ztest = two_proportion_ztest(x1, n1, x2, n2);
        match (&ztest, case["ztest"].is_null()) {
            (Some(z), false) => {
                check.value(&format!("{name}: z"), z.z, f(&case["ztest"], "z"));
                check.p_value(
                    &format!("{name}: p"),
                    z.p_value,
                    f(&case["ztest"], "p_value"),
                );
            }
            (None, true) => check.checked += 1,
            (got, _) => check
                .failures
                .push(format!("{name}: ztest {got:?} vs {}", case["ztest"])),
        }
        check.interval(
            &format!("{name}: diff_ci"),
            diff_confint(x1, n1, x2, n2, alpha),
            &case["diff_ci"],
        );
        check.interval(
            &format!("{name}: ratio_ci"),
            ratio_confint(x1, n1, x2, n2, alpha),
            &case["ratio_ci"],
        );
        // The relative-lift interval is the ratio interval shifted by −1.
        let shifted = case["ratio_ci"].as_array().map(|r| {
            Value::from(vec![
                r[0].as_f64().unwrap_or(f64::NAN) - 1.0,
                r[1].as_f64().unwrap_or(f64::NAN) - 1.0,
            ])
        });
        check.interval(
            &format!("{name}: relative_lift_ci"),
            relative_lift_confint(x1, n1, x2, n2, alpha),
            &shifted.unwrap_or(Value::Null),
        );
    }
    check.finish("proportions");
}

fn check_ttest(
    check: &mut Checker,
    name: &str,
    (m1, v1, n1): (f64, f64, u64),
    (m2, v2, n2): (f64, f64, u64),
    case: &Value,
) {
    let alpha = f(case, "alpha");
    match (welch_ttest(m1, v1, n1, m2, v2, n2), case["ttest"].is_null()) {
        (Some(t), false) => {
            check.value(&format!("{name}: t"), t.t, f(&case["ttest"], "t"));
            check.value(&format!("{name}: df"), t.df, f(&case["ttest"], "df"));
            check.p_value(
                &format!("{name}: p"),
                t.p_value,
                f(&case["ttest"], "p_value"),
            );
        }
        (None, true) => check.checked += 1,
        (got, _) => check
            .failures
            .push(format!("{name}: ttest {got:?} vs {}", case["ttest"])),
    }
    check.interval(
        &format!("{name}: ci"),
        welch_confint(m1, v1, n1, m2, v2, n2, alpha),
        &case["ci"],
    );
}

#[test]
fn welch_from_stats_matches_scipy() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "welch") {
        let a = (f(case, "mean1"), f(case, "var1"), u(case, "n1"));
        let b = (f(case, "mean2"), f(case, "var2"), u(case, "n2"));
        check_ttest(&mut check, s(case, "name"), a, b, case);
    }
    check.finish("welch");
}

#[test]
fn welch_from_sums_matches_scipy_on_raw_data() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "welch_raw") {
        let name = s(case, "name");
        let sample = |v: &Value| {
            let m = Moments::from_sums(u(v, "n"), f(v, "sum"), f(v, "sumsq")).expect("moments");
            (m.mean, m.variance.expect("variance"), m.n)
        };
        check_ttest(
            &mut check,
            name,
            sample(&case["a"]),
            sample(&case["b"]),
            case,
        );
    }
    check.finish("welch_raw");
}

#[test]
fn moments_match_numpy() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "moments") {
        let name = s(case, "name");
        let m =
            Moments::from_sums(u(case, "n"), f(case, "sum"), f(case, "sumsq")).expect("moments");
        check.value(&format!("{name}: mean"), m.mean, f(case, "mean"));
        check.optional(&format!("{name}: variance"), m.variance, &case["variance"]);
    }
    check.finish("moments");
}

#[test]
fn chisquare_matches_scipy() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "chisquare") {
        let name = s(case, "name");
        let observed: Vec<u64> = case["observed"]
            .as_array()
            .expect("observed")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let fractions: Vec<f64> = case["fractions"]
            .as_array()
            .expect("fractions")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let Some(t) = chisquare_gof(&observed, &fractions) else {
            check.failures.push(format!("{name}: undefined"));
            continue;
        };
        check.value(
            &format!("{name}: statistic"),
            t.statistic,
            f(case, "statistic"),
        );
        check.value(&format!("{name}: df"), t.df as f64, f(case, "df"));
        check.p_value(&format!("{name}: p"), t.p_value, f(case, "p_value"));
        check.flag(
            &format!("{name}: mismatch"),
            t.p_value < 0.001,
            &case["mismatch"],
        );
    }
    check.finish("chisquare");
}

#[test]
fn uplift_metrics_match_sklift() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "uplift") {
        let name = s(case, "name");
        let column = |key: &str| {
            case[key]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {key}"))
        };
        let observations: Vec<UpliftObservation> = column("y_true")
            .iter()
            .zip(column("uplift"))
            .zip(column("treatment"))
            .map(|((y, score), t)| UpliftObservation {
                y_true: y.as_u64() == Some(1),
                uplift: score.as_f64().expect("score"),
                treated: t.as_u64() == Some(1),
            })
            .collect();
        check.optional(
            &format!("{name}: qini_auc_score"),
            qini_auc_score(&observations).expect("valid data"),
            &case["qini_auc_score"],
        );
        check.optional(
            &format!("{name}: uplift_auc_score"),
            uplift_auc_score(&observations).expect("valid data"),
            &case["uplift_auc_score"],
        );
        for at_k in case["uplift_at_k"].as_array().expect("uplift_at_k") {
            let k = f(at_k, "k");
            let strategy: UpliftStrategy = s(at_k, "strategy").parse().expect("strategy");
            check.optional(
                &format!("{name}: uplift_at_k(k={k}, {strategy:?})"),
                uplift_at_k(&observations, k, strategy).expect("valid data"),
                &at_k["value"],
            );
        }
        if !case["qini_curve"].is_null() {
            check.curve(
                &format!("{name}: qini_curve"),
                &qini_curve(&observations).unwrap(),
                &case["qini_curve"],
            );
        }
        if !case["uplift_curve"].is_null() {
            check.curve(
                &format!("{name}: uplift_curve"),
                &uplift_curve(&observations).unwrap(),
                &case["uplift_curve"],
            );
        }
    }
    check.finish("uplift");
}

fn ci_pair(ci: Option<Interval>) -> Option<(f64, f64)> {
    ci.map(|i| (i.low, i.high))
}

#[test]
fn campaign_reports_match_independent_computation() {
    let root = reference();
    let mut check = Checker::default();
    for case in cases(&root, "reports") {
        let name = s(case, "name");
        let input = &case["input"];
        let arms: Vec<ArmAggregate> =
            serde_json::from_value(input["arms"].clone()).expect("ArmAggregate JSON");
        let split: Option<Vec<(String, f64)>> =
            serde_json::from_value(input["planned_split"].clone()).expect("planned split");
        let report = campaign_report(
            &arms,
            input["control_arm"].as_str(),
            split.as_deref(),
            f(input, "alpha"),
        )
        .expect("report");
        let expected = &case["expected"];
        if report.control_arm.as_deref() != expected["control_arm"].as_str() {
            check
                .failures
                .push(format!("{name}: control {:?}", report.control_arm));
        }
        assert!(
            report.data_warnings.is_empty(),
            "{name}: {:?}",
            report.data_warnings
        );

        for e in expected["arms"].as_array().expect("arms") {
            let arm = s(e, "arm");
            let Some(a) = report.arms.iter().find(|a| a.arm == arm) else {
                check.failures.push(format!("{name}: arm {arm} missing"));
                continue;
            };
            let w = |field: &str| format!("{name}/{arm}: {field}");
            check.optional(&w("ctr"), a.ctr, &e["ctr"]);
            check.optional(
                &w("conversion_rate"),
                a.conversion_rate,
                &e["conversion_rate"],
            );
            check.optional(
                &w("revenue_per_user"),
                a.revenue_per_user,
                &e["revenue_per_user"],
            );
            check.optional(
                &w("revenue_per_user_sd"),
                a.revenue_per_user_sd,
                &e["revenue_per_user_sd"],
            );
            check.optional(&w("roi"), a.roi, &e["roi"]);
            check.optional(&w("roas"), a.roas, &e["roas"]);
        }

        let expected_comparisons = expected["comparisons"].as_array().expect("comparisons");
        if expected_comparisons.len() != report.comparisons.len() {
            check
                .failures
                .push(format!("{name}: {} comparisons", report.comparisons.len()));
        }
        for e in expected_comparisons {
            let arm = s(e, "arm");
            let Some(c) = report.comparisons.iter().find(|c| c.arm == arm) else {
                check
                    .failures
                    .push(format!("{name}: comparison {arm} missing"));
                continue;
            };
            for (metric, p) in [("conversion_rate", &c.conversion_rate), ("ctr", &c.ctr)] {
                let e = &e[metric];
                let w = |field: &str| format!("{name}/{arm}/{metric}: {field}");
                check.optional(&w("absolute_lift"), p.absolute_lift, &e["absolute_lift"]);
                check.interval(
                    &w("absolute_lift_ci"),
                    ci_pair(p.absolute_lift_ci),
                    &e["absolute_lift_ci"],
                );
                check.optional(&w("relative_lift"), p.relative_lift, &e["relative_lift"]);
                check.interval(
                    &w("relative_lift_ci"),
                    ci_pair(p.relative_lift_ci),
                    &e["relative_lift_ci"],
                );
                check.optional(&w("z"), p.z, &e["z"]);
                check.optional_p(&w("p_value"), p.p_value, &e["p_value"]);
                check.flag(&w("significant"), p.significant, &e["significant"]);
                if let Some(test) = e.get("test") {
                    let actual = serde_json::to_value(p.test).unwrap_or(Value::Null);
                    if &actual != test {
                        check
                            .failures
                            .push(format!("{}: {actual} vs {test}", w("test")));
                    }
                }
            }
            let m = &c.revenue_per_user;
            let e = &e["revenue_per_user"];
            let w = |field: &str| format!("{name}/{arm}/revenue_per_user: {field}");
            check.optional(&w("difference"), m.difference, &e["difference"]);
            check.interval(
                &w("difference_ci"),
                ci_pair(m.difference_ci),
                &e["difference_ci"],
            );
            check.optional(
                &w("relative_difference"),
                m.relative_difference,
                &e["relative_difference"],
            );
            check.optional(&w("t"), m.t, &e["t"]);
            check.optional(&w("df"), m.df, &e["df"]);
            check.optional_p(&w("p_value"), m.p_value, &e["p_value"]);
            check.flag(&w("significant"), m.significant, &e["significant"]);
        }

        let e = &expected["srm"];
        match &report.srm {
            None => check.failures.push(format!("{name}: no srm")),
            Some(srm) => {
                check.optional(&format!("{name}: srm chi2"), srm.chi2, &e["chi2"]);
                check.value(&format!("{name}: srm df"), srm.df as f64, f(e, "df"));
                check.optional_p(&format!("{name}: srm p"), srm.p_value, &e["p_value"]);
                check.flag(
                    &format!("{name}: srm mismatch"),
                    srm.mismatch,
                    &e["mismatch"],
                );
                let fractions = e["expected_fractions"].as_array().expect("fractions");
                for (i, (arm, fraction)) in srm.arms.iter().zip(fractions).enumerate() {
                    check.optional(
                        &format!("{name}: srm fraction {i}"),
                        Some(arm.expected_fraction),
                        fraction,
                    );
                }
            }
        }
    }
    check.finish("reports");
}
