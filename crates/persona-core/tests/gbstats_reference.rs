//! Checks `persona_core::stats::{t_test, sequential_test, bayesian_test, compute_theta}` against
//! GrowthBook's statistics engine (gbstats 0.8.0) and the power calculations against statsmodels'
//! `NormalIndPower`, with values computed by `scripts/gbstats_reference.py` and committed as
//! `tests/data/gbstats_reference.json`, so no Python is needed here.
//!
//! Tolerance: `|actual − expected| ≤ 1e-6 · max(1, |expected|)`; p-values and chances to win are
//! held to `1e-6 · |expected|` plus 1e-12 (gbstats computes `1 − cdf`, which cannot resolve
//! p-values below ~1e-16). Where gbstats returns its uninformative default the Rust function
//! must return the matching [`Undefined`].

use std::path::Path;

use persona_core::stats::{
    bayesian_test, compute_theta, minimum_detectable_effect, sequential_test, t_test,
    users_per_arm, Baseline, Difference, NormalPrior, Statistic, Undefined,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gbstats_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

#[derive(Default)]
struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    fn value(&mut self, what: &str, actual: f64, expected: &Value) {
        self.checked += 1;
        let e = expected.as_f64().unwrap_or(f64::NAN);
        let ok = (actual - e).abs() <= TOLERANCE * e.abs().max(1.0);
        if !ok {
            self.failures
                .push(format!("{what}: got {actual:e}, expected {e:e}"));
        }
    }

    fn probability(&mut self, what: &str, actual: f64, expected: &Value) {
        self.checked += 1;
        let e = expected.as_f64().unwrap_or(f64::NAN);
        let ok = (actual - e).abs() <= TOLERANCE * e.abs() + 1e-12;
        if !ok {
            self.failures
                .push(format!("{what}: got {actual:e}, expected {e:e}"));
        }
    }

    fn undefined(&mut self, what: &str, actual: Option<Undefined>, expected: &Value) {
        self.checked += 1;
        let want = match expected.as_str() {
            Some("ZERO_NEGATIVE_BASELINE_VARIATION") => Undefined::ZeroBaseline,
            Some("ZERO_NEGATIVE_VARIANCE") => Undefined::ZeroVariance,
            Some("NO_UNITS_IN_VARIATION") => Undefined::NoUnits,
            other => panic!("unknown gbstats message {other:?}"),
        };
        if actual != Some(want) {
            self.failures
                .push(format!("{what}: got {actual:?}, gbstats says {expected}"));
        }
    }
}

fn statistic(v: &Value) -> Statistic {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("statistic {v}: {e}"))
}

fn difference(v: &Value) -> Difference {
    match v.as_str() {
        Some("absolute") => Difference::Absolute,
        Some("relative") => Difference::Relative,
        other => panic!("difference {other:?}"),
    }
}

#[test]
fn effects_equal_gbstats() {
    let root = reference();
    let cases = root["statistics"].as_array().expect("statistics cases");
    assert!(cases.len() >= 300, "the reference has its cases");
    let mut c = Checker::default();
    let mut defined = 0;
    for case in cases {
        let what = format!(
            "{} {} {} alpha {} {}",
            case["kind"],
            case["name"],
            case["difference"],
            case["alpha"],
            case.get("tuning")
                .or(case.get("prior"))
                .cloned()
                .unwrap_or(Value::Null)
        );
        let (a, b) = (statistic(&case["a"]), statistic(&case["b"]));
        let expected = &case["expected"];
        if case["kind"] == "theta" {
            c.value(&what, compute_theta(&a, &b), expected);
            continue;
        }
        let d = difference(&case["difference"]);
        let alpha = case["alpha"].as_f64().unwrap();
        match case["kind"].as_str().unwrap() {
            kind @ ("ttest" | "sequential") => {
                let got = if kind == "ttest" {
                    t_test(&a, &b, d, alpha)
                } else {
                    sequential_test(&a, &b, d, alpha, case["tuning"].as_f64().unwrap())
                };
                if let Some(u) = expected.get("undefined") {
                    c.undefined(&what, got.err(), u);
                    continue;
                }
                let Ok(got) = got else {
                    c.failures.push(format!("{what}: got {got:?}"));
                    continue;
                };
                defined += 1;
                c.value(&format!("{what} effect"), got.effect, &expected["effect"]);
                c.value(&format!("{what} se"), got.se, &expected["se"]);
                c.value(&format!("{what} ci low"), got.ci.low, &expected["ci"][0]);
                c.value(&format!("{what} ci high"), got.ci.high, &expected["ci"][1]);
                c.probability(&format!("{what} p"), got.p_value, &expected["p_value"]);
            }
            "bayesian" => {
                let prior = case["prior"].as_object().map(|p| NormalPrior {
                    mean: p["mean"].as_f64().unwrap(),
                    variance: p["variance"].as_f64().unwrap(),
                });
                let got = bayesian_test(&a, &b, d, alpha, prior);
                if let Some(u) = expected.get("undefined") {
                    c.undefined(&what, got.err(), u);
                    continue;
                }
                let Ok(got) = got else {
                    c.failures.push(format!("{what}: got {got:?}"));
                    continue;
                };
                defined += 1;
                c.value(&format!("{what} effect"), got.effect, &expected["effect"]);
                c.value(&format!("{what} sd"), got.sd, &expected["se"]);
                c.value(&format!("{what} ci low"), got.ci.low, &expected["ci"][0]);
                c.value(&format!("{what} ci high"), got.ci.high, &expected["ci"][1]);
                c.probability(
                    &format!("{what} chance to win"),
                    got.chance_to_win,
                    &expected["chance_to_win"],
                );
                c.value(
                    &format!("{what} risk control"),
                    got.risk_control,
                    &expected["risk"][0],
                );
                c.value(
                    &format!("{what} risk treatment"),
                    got.risk_treatment,
                    &expected["risk"][1],
                );
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert!(defined >= 250, "most cases are defined ({defined})");
    assert!(
        c.failures.is_empty(),
        "{} of {} values differ from gbstats:\n{}",
        c.failures.len(),
        c.checked,
        c.failures.join("\n")
    );
}

fn baseline(v: &Value) -> Baseline {
    match v["metric"].as_str() {
        Some("proportion") => Baseline::Proportion {
            rate: v["rate"].as_f64().unwrap(),
        },
        Some("mean") => Baseline::Mean {
            mean: v["mean"].as_f64().unwrap(),
            sd: v["sd"].as_f64().unwrap(),
        },
        other => panic!("metric {other:?}"),
    }
}

#[test]
fn power_equals_statsmodels() {
    let root = reference();
    let cases = root["power"].as_array().expect("power cases");
    assert!(cases.len() >= 30);
    let mut c = Checker::default();
    for case in cases {
        let what = case.to_string();
        let f = |k: &str| case[k].as_f64().unwrap();
        let arms = case["arms"].as_u64().unwrap() as u32;
        let base = baseline(&case["baseline"]);
        match case["kind"].as_str().unwrap() {
            "users" => {
                let plan = users_per_arm(base, f("mde"), f("alpha"), f("power"), arms)
                    .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                c.value(&format!("{what} h"), plan.effect_size, &case["effect_size"]);
                c.value(
                    &format!("{what} n"),
                    plan.users_per_arm_exact,
                    &case["users_per_arm"],
                );
            }
            "mde" => {
                let plan =
                    minimum_detectable_effect(base, f("users"), f("alpha"), f("power"), arms)
                        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                c.value(&format!("{what} h"), plan.effect_size, &case["effect_size"]);
                c.value(&format!("{what} mde"), plan.mde, &case["mde"]);
            }
            other => panic!("kind {other}"),
        }
    }
    assert!(
        c.failures.is_empty(),
        "{} of {} values differ from statsmodels:\n{}",
        c.failures.len(),
        c.checked,
        c.failures.join("\n")
    );
}
