//! Training time against the number of ratings, without PostgreSQL: the synthetic long-tail
//! ratings of `benches/bench.py`'s "scale" section (MovieLens 25M's shape: 162,541 users ×
//! 59,047 items at 25M ratings, users and items in proportion at smaller sizes; user u = U·r^1.8,
//! item i = I·r^1.9), generated here with the same power laws, then each algorithm trained once.
//! It prints the training time per size and the growth factor between sizes, so a trainer whose
//! time grows faster than the ratings shows up in seconds, not in a 15-minute SQL benchmark.
//!
//!     cargo run --release -p persona-core --example scale [SIZES] [ALGOS] [OPTIONS] [REPEATS] [CATALOGUE]
//!     cargo run --release -p persona-core --example scale 1000000,5000000 svd,svdpp
//!     cargo run --release -p persona-core --example scale 25000000 svdpp '{"epochs": 5}'
//!     cargo run --release -p persona-core --example scale 1000000,5000000,25000000 svdpp,als {} 3
//!     cargo run --release -p persona-core --example scale 1000000,5000000,25000000 svdpp {} 3 25000000
//!
//! CATALOGUE, a fifth argument, fixes the users and items at those of that many ratings (above:
//! 162,541 x 59,047 at every size), so the factor tables stay the same size and only the ratings
//! grow.
//!
//! With REPEATS > 1 each size trains every algorithm that many times, the algorithms taking turns
//! (so a slow minute on a shared machine falls on all of them), and the growth factor compares
//! medians: on a VM whose timings move by up to 2x between runs one run says little.
use std::time::Instant;

use persona_core::cf::{train, Algorithm, Dataset};
use persona_core::control::{NoMonitor, Threads};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use sha2::Digest;

/// `n` ratings over the users and items MovieLens 25M's shape gives `catalogue` ratings (`n`
/// itself in the benchmark).
fn ratings(n: usize, catalogue: usize) -> Dataset {
    let users = (162_541.0 * catalogue as f64 / 25e6).round().max(100.0);
    let items = (59_047.0 * catalogue as f64 / 25e6).round().max(50.0);
    let mut rng = Pcg64Mcg::seed_from_u64(42);
    let mut seen = rustc_hash::FxHashSet::default();
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let u = 1 + (users * rng.random::<f64>().powf(1.8)) as i64;
        let i = 1 + (items * rng.random::<f64>().powf(1.9)) as i64;
        if seen.insert((u, i)) {
            let r = (3.5 + rng.random::<f64>() * 2.0 - 1.0 + ((rows.len() % 7) as f64 - 3.0) * 0.2)
                .round()
                .clamp(1.0, 5.0);
            rows.push((u, i, r as f32));
        }
    }
    Dataset::from_triples(&rows).expect("ratings")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sizes: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1000000,5000000".into())
        .split(',')
        .map(|s| s.parse().expect("size"))
        .collect();
    let algos: Vec<Algorithm> = args
        .next()
        .unwrap_or_else(|| "svd,svdpp,als,knn_item".into())
        .split(',')
        .map(|s| s.parse().expect("algorithm"))
        .collect();
    // The same options for every algorithm (`cf_train`'s jsonb), each algorithm's defaults when absent.
    let options = args.next().unwrap_or_else(|| "{}".into());
    let repeats: usize = args.next().map_or(1, |r| r.parse().expect("repeats"));
    // Users and items as at this many ratings, whatever the size: with the catalogue fixed the
    // factor tables are the same size at every size, so a time that still grows faster than the
    // ratings is the trainer's own work, not its tables outgrowing a cache.
    let catalogue: Option<usize> = args.next().map(|c| c.parse().expect("catalogue"));
    let threads = Threads::new(2).expect("threads");
    let mut last: Vec<Option<(usize, f64)>> = vec![None; algos.len()];
    for &n in &sizes {
        let t = Instant::now();
        let d = ratings(n, catalogue.unwrap_or(n));
        // Item-based k-NN's similarity walk visits every pair of items a user rated: its work is
        // the sum of the squared user activities, which a long tail makes grow faster than n.
        let pairs: f64 = (0..d.n_users() as u32)
            .map(|u| (d.by_user.row_len(u) as f64).powi(2))
            .sum();
        println!(
            "{n} ratings: {} users x {} items, {pairs:.3e} co-rated pairs (generated in {:.1} s)",
            d.n_users(),
            d.n_items(),
            t.elapsed().as_secs_f64()
        );
        let mut times = vec![Vec::new(); algos.len()];
        let mut digests = vec![String::new(); algos.len()];
        for round in 0..repeats {
            for (a, &algo) in algos.iter().enumerate() {
                let t = Instant::now();
                let model = train(&d, algo, &options, &threads, &mut NoMonitor).expect("trains");
                let s = t.elapsed().as_secs_f64();
                // A change that should only move memory (a layout, a prefetch) must keep these.
                let digest = sha2::Sha256::digest(model.to_bytes());
                let digest = format!(
                    "{:02x}{:02x}{:02x}{:02x}",
                    digest[0], digest[1], digest[2], digest[3]
                );
                assert!(
                    round == 0 || digest == digests[a],
                    "{algo}: another model from the same ratings"
                );
                digests[a] = digest;
                times[a].push(s);
            }
        }
        for (a, &algo) in algos.iter().enumerate() {
            let mut sorted = times[a].clone();
            sorted.sort_by(f64::total_cmp);
            let mid = sorted.len() / 2;
            let median = if sorted.len() % 2 == 0 {
                (sorted[mid - 1] + sorted[mid]) / 2.0
            } else {
                sorted[mid]
            };
            let growth = last[a]
                .map(|(m, prev)| {
                    format!(
                        "  {:.1}x for {:.1}x ratings",
                        median / prev,
                        n as f64 / m as f64
                    )
                })
                .unwrap_or_default();
            let runs = if repeats > 1 {
                let each: Vec<String> = times[a].iter().map(|t| format!("{t:.2}")).collect();
                format!(" (median of {}: {} s;", repeats, each.join(", "))
            } else {
                " (".to_string()
            };
            // What cf_train would check persona.max_training_memory against after reading.
            let estimate = persona_core::cf::estimate_peak_bytes(&d, algo, &options, n)
                .expect("options parse");
            println!(
                "  {:9} {median:7.2} s{growth}  {:.0} ns per rating (whole training){runs} model sha256 {}..., memory estimate {} MB)",
                algo.name(),
                median * 1e9 / n as f64,
                digests[a],
                estimate >> 20
            );
            last[a] = Some((n, median));
        }
    }
}
