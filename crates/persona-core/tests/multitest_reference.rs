//! Checks `persona_core::stats::adjust_pvalues` against statsmodels' `multipletests` (Holm and
//! Benjamini-Hochberg adjusted p-values), computed by `scripts/multitest_reference.py` and
//! committed as `tests/data/multitest_reference.json` so that no Python is needed here. Every
//! adjusted p-value must agree within 1e-12 (relative, for the tiny ones).

use std::path::Path;

use persona_core::stats::{adjust_pvalues, Correction};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

#[test]
fn corrections_equal_statsmodels() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/multitest_reference.json");
    let root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = root["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "the reference has its cases");
    for (n, case) in cases.iter().enumerate() {
        let p: Vec<Option<f64>> = floats(&case["p"]).into_iter().map(Some).collect();
        for (method, key) in [
            (Correction::Holm, "holm"),
            (Correction::BenjaminiHochberg, "benjamini_hochberg"),
        ] {
            let got = adjust_pvalues(&p, method);
            let expected = floats(&case[key]);
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                let g = g.expect("every p-value is defined");
                assert!(
                    (g - e).abs() <= 1e-12 * e.abs().max(1e-300),
                    "case {n} {key}: {g} against statsmodels' {e}"
                );
            }
        }
    }
}
