//! Checks `persona_core::cf::beyond` against values computed with Microsoft Recommenders 1.2.1
//! itself (`recommenders.evaluation.python_evaluation`) by `scripts/cf_metrics_reference.py`,
//! committed as `tests/data/cf_metrics_reference.json` so that no Python is needed here.
//! Every metric must agree within 1e-9 (absolute); a `null` (NaN in Python) must be `None`.

use std::collections::BTreeMap;
use std::path::Path;

use persona_core::cf::beyond::{beyond_accuracy, RecoList};
use persona_core::cf::Csr;
use persona_core::control::Stop;
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn pairs(v: &Value) -> Vec<(i64, i64)> {
    v.as_array()
        .expect("an array of pairs")
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()))
        .collect()
}

#[test]
fn beyond_accuracy_equals_microsoft_recommenders() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cf_metrics_reference.json");
    let root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = root["cases"].as_array().unwrap();
    assert!(cases.len() >= 4, "the reference has its cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (train, reco) = (pairs(&case["train"]), pairs(&case["reco"]));
        // Dense indices: training users and every item seen anywhere.
        let mut users = BTreeMap::new();
        for &(u, _) in &train {
            let n = users.len() as u32;
            users.entry(u).or_insert(n);
        }
        let mut items = BTreeMap::new();
        for &(_, i) in train.iter().chain(&reco) {
            let n = items.len() as u32;
            items.entry(i).or_insert(n);
        }
        let csr = Csr::from_triples(
            users.len(),
            train
                .iter()
                .map(|(u, i)| (users[u], items[i], 1.0))
                .collect(),
        );
        let mut lists: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (u, i) in &reco {
            lists.entry(*u).or_default().push(items[i]);
        }
        let lists: Vec<RecoList> = lists
            .into_iter()
            .map(|(u, items)| RecoList {
                user: users.get(&u).copied(),
                items,
            })
            .collect();
        let got = beyond_accuracy(&csr, items.len(), &lists, &Stop::new()).unwrap();
        let expected = &case["expected"];
        for (metric, value) in [
            ("diversity", got.diversity),
            ("novelty", got.novelty),
            ("serendipity", got.serendipity),
            ("catalog_coverage", Some(got.catalog_coverage)),
            ("distributional_coverage", Some(got.distributional_coverage)),
        ] {
            match (expected[metric].as_f64(), value) {
                (None, None) => {}
                (Some(e), Some(v)) => assert!(
                    (e - v).abs() <= TOLERANCE,
                    "{name} {metric}: {v} against Recommenders' {e}"
                ),
                (e, v) => panic!("{name} {metric}: {v:?} against Recommenders' {e:?}"),
            }
        }
    }
}
