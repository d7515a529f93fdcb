//! Checks `persona_core::lifetime` against lifetimes 0.11.3 (`BetaGeoFitter`, `GammaGammaFitter`,
//! `summary_data_from_transaction_data`, `customer_lifetime_value`) with values computed by
//! `scripts/lifetime_reference.py` and committed as `tests/data/lifetime_reference.json`, so no
//! Python is needed here. Parameters and every per-customer prediction must agree to 1e-4
//! relative (absolute below 1e-4); RFM quintile edges equal pandas' quantiles and the monetary
//! scores pandas `qcut`'s bins.

use std::path::Path;

use persona_core::lifetime::{customer_lifetime_value, summarise, BgNbd, Customer, GammaGamma};
use persona_core::rfm::{RfmEdges, RfmValues};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// Numbers or `null` (where lifetimes gives NaN: not compared).
fn maybe_floats(v: &Value) -> Vec<Option<f64>> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(Value::as_f64)
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * b.abs().max(1.0)
}

#[test]
fn lifetime_models_equal_lifetimes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lifetime_reference.json");
    let root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = root["cases"].as_array().expect("cases");
    assert!(cases.len() >= 3);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let customers: Vec<Customer> = case["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let c = floats(c);
                Customer {
                    frequency: c[0],
                    recency: c[1],
                    age: c[2],
                    monetary: c[3],
                }
            })
            .collect();
        // The summaries from the orders equal lifetimes' (when the orders are kept).
        if let Some(orders) = case["orders"].as_array() {
            let orders: Vec<(i64, i64, f64)> = orders
                .iter()
                .map(|o| {
                    let o = floats(o);
                    (o[0] as i64, o[1] as i64, o[2])
                })
                .collect();
            let ours = summarise(&orders, case["as_of"].as_i64().unwrap());
            assert_eq!(ours.len(), customers.len(), "{name}: customers");
            // RFM: the quintile edges equal pandas' quantiles, the monetary scores qcut's bins.
            let rfm = &case["rfm"];
            let values: Vec<RfmValues> = ours
                .iter()
                .map(|s| RfmValues::of(&s.customer, s.total_value))
                .collect();
            for (v, t) in values.iter().zip(floats(&rfm["totals"])) {
                assert!(
                    (v.total_value - t).abs() < 1e-9,
                    "{name}: total {v:?} against {t}"
                );
            }
            let edges = RfmEdges::fit(&values).unwrap();
            for (got, key) in [
                (edges.recency, "recency"),
                (edges.frequency, "frequency"),
                (edges.monetary, "monetary"),
            ] {
                let want = floats(&rfm["edges"][key]);
                for (g, w) in got.iter().zip(&want) {
                    checked += 1;
                    if (g - w).abs() > 1e-9 * w.abs().max(1.0) {
                        failures.push(format!(
                            "{name}: RFM {key} edges {got:?} against pandas' {want:?}"
                        ));
                        break;
                    }
                }
            }
            let scores: Vec<u8> = values.iter().map(|v| edges.score(v).m).collect();
            let want: Vec<u8> = floats(&rfm["monetary_scores"])
                .iter()
                .map(|&x| x as u8)
                .collect();
            checked += scores.len();
            if scores != want {
                failures.push(format!(
                    "{name}: RFM monetary scores differ from pandas qcut"
                ));
            }
            for (a, b) in ours.iter().map(|s| &s.customer).zip(&customers) {
                checked += 1;
                let same = a.frequency == b.frequency
                    && a.recency == b.recency
                    && a.age == b.age
                    && (a.monetary - b.monetary).abs() <= 1e-9 * b.monetary.max(1.0);
                if !same {
                    failures.push(format!("{name}: summary {a:?} against lifetimes' {b:?}"));
                }
            }
        }
        let penalizer = case["penalizer"].as_f64().unwrap_or(0.0);
        let (bg, report) =
            BgNbd::fit_penalized(&customers, penalizer).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (gg, _) = GammaGamma::fit_penalized(&customers, penalizer)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (got, want, what) in [
            (
                [bg.r, bg.alpha, bg.a, bg.b].to_vec(),
                floats(&case["bgnbd"]),
                "BG/NBD r, alpha, a, b",
            ),
            (
                [gg.p, gg.q, gg.v].to_vec(),
                floats(&case["gamma_gamma"]),
                "Gamma-Gamma p, q, v",
            ),
        ] {
            for (g, w) in got.iter().zip(&want) {
                checked += 1;
                let ok = (g - w).abs() <= TOLERANCE * w.abs();
                if !ok {
                    failures.push(format!(
                        "{name}: {what}: {got:?} against lifetimes' {want:?}"
                    ));
                    break;
                }
            }
        }
        assert!(report.gradient_norm < 1e-6, "{name}: {report:?}");
        let mut per_customer =
            |what: &str, want: Vec<Option<f64>>, f: &dyn Fn(&Customer) -> f64| {
                assert_eq!(want.len(), customers.len());
                let mut bad = 0;
                for (c, w) in customers.iter().zip(&want) {
                    let Some(w) = w else { continue };
                    checked += 1;
                    let g = f(c);
                    if !close(g, *w) {
                        if bad < 3 {
                            failures.push(format!("{name}: {what} of {c:?}: {g} against {w}"));
                        }
                        bad += 1;
                    }
                }
                if bad >= 3 {
                    failures.push(format!("{name}: {what}: {bad} customers differ"));
                }
            };
        per_customer("P(alive)", maybe_floats(&case["p_alive"]), &|c| {
            bg.p_alive(c)
        });
        for t in ["30", "90", "365"] {
            let days: f64 = t.parse().unwrap();
            per_customer(
                &format!("expected purchases in {t}"),
                maybe_floats(&case["expected"][t]),
                &|c| bg.expected_purchases(days, c),
            );
        }
        per_customer(
            "expected average value",
            maybe_floats(&case["average_value"]),
            &|c| gg.expected_average_value(c),
        );
        if case.get("clv_12_months").is_some() {
            per_customer("12-month CLV", maybe_floats(&case["clv_12_months"]), &|c| {
                customer_lifetime_value(&bg, &gg, c, 12, 0.01)
            });
        }
    }
    assert!(checked > 20_000, "checked {checked} values");
    assert!(
        failures.is_empty(),
        "{} mismatches against lifetimes:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
