//! persona-core's silhouette and Lloyd iterations against scikit-learn 1.9.1, from
//! `tests/data/cluster_reference.json` (written by `scripts/cluster_reference.py`; no Python
//! needed here).
//!
//! - silhouette: `silhouette_score` on every point (our sample size set above the point count),
//!   to 1e-9.
//! - Lloyd: `KMeans(init=<centroids>, n_init=1, algorithm='lloyd', tol=1e-4)` and
//!   `cluster::lloyd_from` from the same centroids: the same labels, centroids to 1e-5 and
//!   inertia to 1e-6 relative (our centroids are f32, scikit-learn's f64).
use persona_core::cluster::{lloyd_from, silhouette};
use persona_core::control::NoMonitor;
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cluster_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference file")).expect("JSON")
}

fn points(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("labels")
        .iter()
        .map(|x| x.as_u64().expect("label") as usize)
        .collect()
}

#[test]
fn silhouette_equals_scikit_learn() {
    let r = reference();
    let cases = r["silhouette"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for c in cases {
        let x = points(&c["points"]);
        let got = silhouette(&x, &labels(&c["labels"]), x.len() + 1, 0).expect("defined");
        let want = c["silhouette"].as_f64().expect("value");
        assert!(
            (got - want).abs() < 1e-9,
            "{}: {got} vs scikit-learn {want}",
            c["name"]
        );
    }
}

#[test]
fn lloyd_equals_scikit_learn_from_the_same_centroids() {
    let r = reference();
    let cases = r["lloyd"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    for c in cases {
        let name = &c["name"];
        let x = points(&c["points"]);
        let got = lloyd_from(&x, points(&c["init"]), 300, &mut NoMonitor).expect("clusters");
        assert_eq!(got.labels, labels(&c["labels"]), "{name}: labels");
        for (g, w) in got.centroids.iter().zip(points(&c["centroids"])) {
            for (a, b) in g.iter().zip(&w) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{name}: centroid {g:?} vs {w:?}"
                );
            }
        }
        let want = c["inertia"].as_f64().expect("inertia");
        assert!(
            (got.inertia - want).abs() <= 1e-6 * want,
            "{name}: inertia {} vs {want}",
            got.inertia
        );
    }
}
