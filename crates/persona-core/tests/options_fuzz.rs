//! Algorithm options come from users as JSON: any object, with any key and any value, must give
//! a trained model or an `InvalidParameter` error from estimating and training — never a panic
//! (an internal error in SQL), another kind of error, or a model that predicts NaN. Property
//! test over every algorithm with keys drawn from every algorithm's options plus unknown ones,
//! and values from a pool of edge cases (zero, negatives, huge and fractional numbers, wrong
//! types, every enumerated name).

use std::sync::OnceLock;

use persona_core::cf::{estimate_bytes, train, Algorithm, Dataset, ALGORITHMS};
use persona_core::control::{NoMonitor, Threads};
use persona_core::CoreError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const KEYS: &[&str] = &[
    // matrix factorisation
    "factors",
    "epochs",
    "lr",
    "reg",
    "lr_bias",
    "reg_bias",
    "lr_implicit",
    "reg_implicit",
    "init_std",
    "lr_decay",
    "seed",
    // k-NN
    "similarity",
    "k",
    "min_k",
    "centering",
    "shrinkage",
    "max_neighbors",
    // ALS
    "iterations",
    "alpha",
    "confidence",
    "epsilon",
    "binary",
    // baseline
    "reg_u",
    "reg_i",
    // unknown
    "no_such_option",
    "",
];

fn values() -> Vec<Value> {
    vec![
        json!(-1),
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!(40),
        json!(1001),
        json!(10_001),
        json!(1u64 << 40),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.0),
        json!(-0.5),
        json!(0.01),
        json!(1.5),
        json!(1e-30),
        json!(1e30),
        json!(-1e30),
        json!(f64::MAX),
        json!(""),
        json!("x"),
        json!("cosine"),
        json!("msd"),
        json!("pearson"),
        json!("pearson_baseline"),
        json!("mean"),
        json!("baseline"),
        json!("none"),
        json!("linear"),
        json!("log"),
        json!(true),
        json!(null),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({"a": 1}),
    ]
}

fn data() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| {
        let mut rows = Vec::new();
        for u in 1..=20i64 {
            for i in 1..=10i64 {
                if (u + 2 * i) % 3 != 0 {
                    rows.push((u, i, (1 + (u * i) % 5) as f32));
                }
            }
        }
        Dataset::from_triples(&rows).unwrap()
    })
}

/// Training is only attempted when it is cheap whatever the other values: few epochs and
/// iterations, few factors (the others are checked by estimating alone).
fn cheap(options: &Map<String, Value>) -> bool {
    let small = |key: &str, most: f64| {
        options
            .get(key)
            .and_then(Value::as_f64)
            .is_none_or(|v| v <= most)
    };
    small("epochs", 40.0) && small("iterations", 40.0) && small("factors", 64.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]
    #[test]
    fn any_options_train_or_are_invalid(
        algo in 0usize..ALGORITHMS.len(),
        pairs in proptest::collection::vec((0usize..KEYS.len(), 0usize..36), 0..5),
    ) {
        let pool = values();
        let options: Map<String, Value> = pairs
            .iter()
            .map(|&(k, v)| (KEYS[k].to_string(), pool[v % pool.len()].clone()))
            .collect();
        let text = Value::Object(options.clone()).to_string();
        let algorithm: Algorithm = ALGORITHMS[algo].0.parse().unwrap();
        let d = data();
        let estimated = estimate_bytes(d, algorithm, &text);
        match &estimated {
            Ok(_) | Err(CoreError::InvalidParameter(_)) => {}
            Err(e) => prop_assert!(false, "{algorithm} {text}: estimating gave {e:?}"),
        }
        if let Ok(bytes) = estimated {
            if bytes < (64 << 20) && cheap(&options) {
                match train(d, algorithm, &text, &Threads::current(), &mut NoMonitor) {
                    Ok(m) => {
                        for (u, i) in [(1, 1), (2, 3), (999, 1), (1, 999)] {
                            let p = m.predict(u, i);
                            prop_assert!(p.is_finite(), "{algorithm} {text}: predicted {p}");
                        }
                    }
                    // An option valid alone may still be refused with the others.
                    Err(CoreError::InvalidParameter(_)) => {}
                    Err(e) => prop_assert!(false, "{algorithm} {text}: training gave {e:?}"),
                }
            }
        }
    }
}
