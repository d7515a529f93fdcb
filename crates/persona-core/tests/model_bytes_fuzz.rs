//! Stored cf models are bytes in a table that a privileged role can change: decoding them must
//! give a model that answers every call, or a `CorruptModel` error — never a panic (which
//! reaches SQL as an internal error) or an out-of-bounds index. Property test: valid models of
//! every algorithm, with random bytes overwritten and random truncations.

use std::sync::OnceLock;

use persona_core::cf::{train, Algorithm, CfModel, Dataset, ALGORITHMS};
use persona_core::control::{NoMonitor, Threads};
use persona_core::CoreError;
use proptest::prelude::*;
use proptest::sample::Index;

/// One valid encoded model per algorithm (k-NN in both orientations and centrings).
fn models() -> &'static [Vec<u8>] {
    static MODELS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let mut rows = Vec::new();
        for u in 1..=12i64 {
            for i in 1..=9i64 {
                if (u + 2 * i) % 3 != 0 {
                    rows.push((u, i, (1 + (u * i) % 5) as f32));
                }
            }
        }
        let d = Dataset::from_triples(&rows).unwrap();
        let mut out = Vec::new();
        let mut fit = |algo: Algorithm, options: &str| {
            let m = train(&d, algo, options, &Threads::current(), &mut NoMonitor).unwrap();
            out.push(m.to_bytes());
        };
        for (name, _) in ALGORITHMS {
            fit(name.parse().unwrap(), r#"{}"#);
        }
        fit(Algorithm::KnnUser, r#"{"centering": "mean"}"#);
        fit(
            Algorithm::KnnItem,
            r#"{"centering": "baseline", "similarity": "pearson_baseline"}"#,
        );
        out
    })
}

/// Every read of a decoded model, over known and unknown ids.
fn exercise(m: &CfModel) {
    let ids = [-1i64, 0, 1, 2, 5, 9, 12, 13, i64::MAX];
    for &u in &ids {
        for &i in &ids {
            let _ = m.predict(u, i);
        }
        let _ = m.recommend(u, 5, true);
        let _ = m.recommend(u, 3, false);
        let _ = m.similar_users(u, 3);
        let _ = m.similar_items(u, 3);
    }
    let _ = m.audience(&[1, 2, 99], &Default::default(), 4);
    let _ = m.to_bytes();
}

#[test]
fn every_valid_model_decodes_and_answers() {
    for bytes in models() {
        let m = CfModel::from_bytes(bytes).unwrap();
        exercise(&m);
        assert_eq!(&m.to_bytes(), bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_model_bytes_decode_or_fail_cleanly(
        which in any::<Index>(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let mut bytes = which.get(models()).clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        match CfModel::from_bytes(&bytes) {
            Ok(m) => exercise(&m),
            Err(e) => prop_assert!(matches!(e, CoreError::CorruptModel(_)), "{e:?}"),
        }
    }
}
