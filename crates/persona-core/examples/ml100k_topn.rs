//! Top-N quality on MovieLens 100K with the protocol of Microsoft Recommenders' published table:
//! a per-user stratified 75/25 split of u.data (seeded), 10 unseen items recommended to every user,
//! an item is relevant if it is in that user's test part.
//!
//!     cargo run --release -p persona-core --example ml100k_topn -- [DIR] [ALGO] [JSON-PARAMS] [SEED]
mod common;

use std::time::Instant;

use persona_core::cf::evaluate::{evaluate, split_rows, Rows, SplitKind};
use persona_core::cf::{train, Algorithm, DatasetBuilder};
use persona_core::control::{NoMonitor, Threads};

fn main() {
    let (common::Args { dir, algo, params }, mut rest) = common::args(Algorithm::Als);
    let seed: u64 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(42);
    let path = format!("{dir}/u.data");
    let Ok(text) = std::fs::read_to_string(&path) else {
        common::skipped(&path);
        return;
    };
    let mut rows = Rows::default();
    for (u, i, r) in persona_core::cf::parse_tab_ratings(&text) {
        rows.push(u, i, Some(r));
    }
    let (tr, te) = split_rows(&rows, SplitKind::PerUser, 0.25, seed);
    let mut b = DatasetBuilder::new();
    rows.fill(&mut b, &tr);
    let d = b.build().unwrap();
    let t = Instant::now();
    let m = train(&d, algo, &params, &Threads::current(), &mut NoMonitor).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let r = evaluate(&m, &rows.triples(&te), 10);
    let k = r.ranking.unwrap();
    println!(
        "{algo} {params}: precision@10 {:.4} recall@10 {:.4} NDCG@10 {:.4} MAP@10 {:.4} coverage {:.3} users {} train {secs:.2} s",
        k.precision_at_k, k.recall_at_k, k.ndcg_at_k, k.map_at_k, k.catalog_coverage, k.n_users
    );
}
