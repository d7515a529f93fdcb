//! Rating-prediction quality on MovieLens 100K's canonical folds u1..u5 (the protocol of Surprise's
//! published table): train on uN.base, score uN.test, mean over folds.
//!
//!     cargo run --release -p persona-core --example ml100k_rmse -- [DIR] [ALGO] [JSON-PARAMS]
//!
//! DIR defaults to ../shared/data/ml-100k (MovieLens may not be redistributed: read it by path).
mod common;

use std::time::Instant;

use persona_core::cf::{parse_tab_ratings, train, Algorithm, Dataset, DatasetBuilder};
use persona_core::control::{NoMonitor, Threads};

fn read(path: &str) -> Vec<(i64, i64, f32)> {
    parse_tab_ratings(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn main() {
    let (common::Args { dir, algo, params }, _) = common::args(Algorithm::default());
    let first = format!("{dir}/u1.base");
    if !std::path::Path::new(&first).exists() {
        common::skipped(&first);
        return;
    }
    let (mut rmse, mut mae, mut secs) = (0.0, 0.0, 0.0);
    for fold in 1..=5 {
        let base = read(&format!("{dir}/u{fold}.base"));
        let test = read(&format!("{dir}/u{fold}.test"));
        let t = Instant::now();
        let mut b = DatasetBuilder::new();
        for &(u, i, r) in &base {
            b.push(u, i, Some(r));
        }
        let d: Dataset = b.build().unwrap();
        let model = train(&d, algo, &params, &Threads::current(), &mut NoMonitor).unwrap();
        secs += t.elapsed().as_secs_f64();
        let (mut se, mut ae) = (0.0f64, 0.0f64);
        for &(u, i, r) in &test {
            let p = model.predict(u, i) as f64;
            se += (p - r as f64).powi(2);
            ae += (p - r as f64).abs();
        }
        let n = test.len() as f64;
        println!(
            "fold u{fold}: RMSE {:.4} MAE {:.4}",
            (se / n).sqrt(),
            ae / n
        );
        rmse += (se / n).sqrt() / 5.0;
        mae += ae / n / 5.0;
    }
    println!(
        "{algo:?} {params}: RMSE {rmse:.4} MAE {mae:.4} train {:.3} s/fold",
        secs / 5.0
    );
}
