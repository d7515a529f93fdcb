//! Criterion benchmarks of the core trainers and of top-N scoring, without PostgreSQL.
//! Uses MovieLens 100K u1.base when ../shared/data/ml-100k is present (it may not be
//! redistributed, so it is read by path), else the deterministic demo data set.
//!
//!     cargo bench -p persona-core --bench cf_train
use criterion::{criterion_group, criterion_main, Criterion};
use persona_core::cf::{train, Algorithm, Dataset};
use persona_core::control::{NoMonitor, Threads};
use persona_core::demo::{generate, DemoConfig};

fn data() -> (String, Dataset) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/ml-100k/u1.base"
    );
    if let Ok(text) = std::fs::read_to_string(path) {
        let rows = persona_core::cf::parse_tab_ratings(&text);
        return (
            "ml-100k u1.base".into(),
            Dataset::from_triples(&rows).expect("ratings"),
        );
    }
    eprintln!("ml-100k not found at {path}: benchmarking on the demo data set instead");
    let d = generate(&DemoConfig {
        users: 2000,
        items: 1000,
        seed: 1,
    });
    let rows: Vec<(i64, i64, f32)> = d
        .ratings
        .iter()
        .map(|r| (r.user_id, r.item_id, r.rating))
        .collect();
    (
        "demo 2000x1000".into(),
        Dataset::from_triples(&rows).expect("ratings"),
    )
}

fn bench(c: &mut Criterion) {
    let (name, d) = data();
    let mut g = c.benchmark_group(format!("train {name}"));
    g.sample_size(10);
    for algo in [
        Algorithm::Baseline,
        Algorithm::Svd,
        Algorithm::Svdpp,
        Algorithm::KnnItem,
        Algorithm::Als,
    ] {
        g.bench_function(algo.name(), |b| {
            b.iter(|| train(&d, algo, "{}", &Threads::current(), &mut NoMonitor).expect("trains"))
        });
    }
    // The setting of the comparison with implicit (benches/bench.py, section 7).
    let als64 = r#"{"factors": 64, "iterations": 15, "reg": 1, "alpha": 2}"#;
    g.bench_function("als 64 factors", |b| {
        b.iter(|| {
            train(
                &d,
                Algorithm::Als,
                als64,
                &Threads::current(),
                &mut NoMonitor,
            )
            .expect("trains")
        })
    });
    g.finish();
    let m = train(
        &d,
        Algorithm::Svd,
        "{}",
        &Threads::current(),
        &mut NoMonitor,
    )
    .expect("trains");
    let users: Vec<i64> = d.users.ids().iter().take(100).copied().collect();
    c.bench_function(&format!("recommend top-10 x100 users, {name}"), |b| {
        b.iter(|| {
            users
                .iter()
                .map(|&u| m.recommend(u, 10, true).len())
                .sum::<usize>()
        })
    });
    c.bench_function(&format!("predict x10000, {name}"), |b| {
        b.iter(|| {
            (0..10_000i64)
                .map(|n| m.predict(1 + n % 900, 1 + n % 1600))
                .sum::<f32>()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
