//! profile_train's core work at the size of the README's portrait benchmark, without
//! PostgreSQL: the summaries of 1,000,000 orders of 100,000 customers, the BG/NBD and
//! Gamma-Gamma fits, the RFM quintiles, and taste clusters (k by silhouette over 2..=8) on
//! 100,000 users' 20-dimensional factors. Prints the time of each step.
//!
//!     cargo run --release -p persona-core --example portrait_scale
use std::time::Instant;

use persona_core::cluster::choose_k;
use persona_core::control::{NoMonitor, Threads};
use persona_core::lifetime::summarise;
use persona_core::portrait::PortraitModel;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;

fn main() {
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    // Orders: 100k customers, each with a first day in a two-year window and a Poisson-ish
    // number of purchase days after it (10 on average), some stopping early.
    let (customers, as_of) = (100_000i64, 730i64);
    let mut orders = Vec::new();
    while orders.len() < 1_000_000 {
        let c = rng.random_range(0..customers);
        let first = rng.random_range(0..as_of);
        let day = (first + rng.random_range(0..=(as_of - first))).min(as_of);
        orders.push((c, day, rng.random_range(5.0..120.0)));
    }
    let t = Instant::now();
    let summaries = summarise(&orders, as_of);
    println!(
        "summaries of {} orders: {} customers in {:.2} s",
        orders.len(),
        summaries.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let model = PortraitModel::fit(
        &summaries,
        0.01,
        0.0,
        &Threads::new(2).expect("threads"),
        &mut NoMonitor,
    );
    println!(
        "lifetime fits + RFM: {:.2} s ({})",
        t.elapsed().as_secs_f64(),
        match &model {
            Ok(m) => format!(
                "BG/NBD {} iterations, Gamma-Gamma {:?}",
                m.bgnbd_fit.iterations,
                m.gamma_gamma_fit.as_ref().map(|f| f.iterations)
            ),
            Err(e) => e.to_string(),
        }
    );
    // Factors: 6 loose groups in 20 dimensions.
    let noise = Normal::new(0.0f32, 0.6).expect("normal");
    let centres: Vec<Vec<f32>> = (0..6)
        .map(|_| (0..20).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let points: Vec<Vec<f32>> = (0..100_000)
        .map(|n| {
            centres[n % 6]
                .iter()
                .map(|c| c + noise.sample(&mut rng))
                .collect()
        })
        .collect();
    let t = Instant::now();
    let (c, scores) = choose_k(&points, 2..=8, 42, &mut NoMonitor).expect("clusters");
    println!(
        "taste clusters: k = {} in {:.2} s (silhouettes {scores:.3?})",
        c.centroids.len(),
        t.elapsed().as_secs_f64()
    );
    // The 5 most similar users of every user (user_profiles' taste_cluster sections).
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    let panels = persona_core::cf::neighbours::Panels::new(&flat, 20);
    let all: Vec<u32> = (0..points.len() as u32).collect();
    let t = Instant::now();
    let lists = panels
        .most_similar(&all, 5, &Threads::new(2).expect("threads"), &mut NoMonitor)
        .expect("neighbours");
    println!(
        "5 most similar users of each of {} users: {:.2} s",
        lists.len(),
        t.elapsed().as_secs_f64()
    );
}
