//! A deterministic generator of demo data: users, items with categories and short descriptions,
//! ratings drawn from latent tastes plus noise, one campaign with a treatment and a control arm
//! (exposures, clicks, conversions, revenue) and customer feedback texts. The same seed gives the
//! same data on every machine, so the demo and the tests run anywhere without downloads.
//!
//! Times are seconds after [`EPOCH`] (2026-03-01 00:00 UTC) so the data does not move with the clock.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;

/// 2026-03-01T00:00:00Z as a Unix timestamp: time zero of the demo data.
pub const EPOCH: i64 = 1_772_323_200;
const DAY: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoConfig {
    pub users: usize,
    pub items: usize,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            users: 500,
            items: 120,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub user_id: i64,
    pub name: String,
    pub country: &'static str,
    pub signup_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub item_id: i64,
    pub title: String,
    pub category: &'static str,
    pub description: String,
    pub price: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rating {
    pub user_id: i64,
    pub item_id: i64,
    pub rating: f32,
    pub rated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub campaign: &'static str,
    pub channel: &'static str,
    pub starts_at: i64,
    pub ends_at: i64,
    pub cost: f64,
    pub items: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub user_id: i64,
    pub arm: &'static str,
    pub event: &'static str,
    pub value: Option<f64>,
    pub occurred_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub user_id: i64,
    pub item_id: i64,
    pub campaign: Option<&'static str>,
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Demo {
    pub users: Vec<User>,
    pub items: Vec<Item>,
    pub ratings: Vec<Rating>,
    pub campaign: Campaign,
    pub events: Vec<Event>,
    pub feedback: Vec<Feedback>,
    /// Purchases outside any campaign in the 30 days before the campaign (campaign
    /// [`ORGANIC`], no arm): the pre-period data of CUPED.
    pub organic: Vec<Event>,
}

/// The `campaign` value of purchases made outside any campaign.
pub const ORGANIC: &str = "organic";

pub const CATEGORIES: [&str; 6] = [
    "outdoor",
    "books",
    "electronics",
    "kitchen",
    "fashion",
    "games",
];
const COUNTRIES: [&str; 5] = ["DE", "FR", "US", "JP", "BR"];
const FIRST: [&str; 12] = [
    "Ada", "Bo", "Chen", "Dana", "Emil", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena",
];
const LAST: [&str; 8] = [
    "Meyer", "Okafor", "Silva", "Tanaka", "Novak", "Dubois", "Larsen", "Rossi",
];
const NOUNS: [[&str; 4]; 6] = [
    ["tent", "hiking boots", "camping stove", "backpack"],
    ["novel", "cookbook", "travel guide", "poetry collection"],
    ["headphones", "e-reader", "smart speaker", "action camera"],
    ["chef's knife", "espresso maker", "cast-iron pan", "blender"],
    ["rain jacket", "wool sweater", "sneakers", "leather belt"],
    ["board game", "puzzle", "strategy game", "card game"],
];
const ADJ: [&str; 8] = [
    "Classic", "Compact", "Deluxe", "Everyday", "Nordic", "Pro", "Urban", "Vintage",
];
const POSITIVE: [&str; 6] = [
    "Love the {t}, great quality and fast delivery.",
    "The {t} is excellent, exactly what I wanted.",
    "Really happy with my {t}; would buy again.",
    "Fantastic {t}, works perfectly.",
    "The {t} exceeded my expectations.",
    "Great value, the {t} is wonderful.",
];
const NEGATIVE: [&str; 6] = [
    "The {t} broke after a week, very disappointed.",
    "Terrible {t}, poor quality and overpriced.",
    "I returned the {t}; it did not work.",
    "The {t} arrived damaged and support was unhelpful.",
    "Not worth the money, the {t} feels cheap.",
    "Awful experience with the {t}.",
];

/// Generates the demo data for `cfg`. Deterministic: same config, same data.
pub fn generate(cfg: &DemoConfig) -> Demo {
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
    let n_users = cfg.users.max(2);
    let n_items = cfg.items.max(CATEGORIES.len());
    const K: usize = 4;
    let normal = Normal::new(0.0f32, 1.0).expect("unit normal");

    let items: Vec<Item> = (0..n_items)
        .map(|n| {
            let c = n % CATEGORIES.len();
            let noun = NOUNS[c][(n / CATEGORIES.len()) % 4];
            let adj = ADJ[(n * 7 + n / 24) % ADJ.len()];
            let title = format!("{adj} {noun} #{}", n + 1);
            let price = (10.0 + rng.random::<f64>() * 190.0).round();
            Item {
                item_id: n as i64 + 1,
                description: format!("{adj} {noun} for {} lovers.", CATEGORIES[c]),
                title,
                category: CATEGORIES[c],
                price,
            }
        })
        .collect();
    let item_f: Vec<[f32; K]> = (0..n_items)
        .map(|_| std::array::from_fn(|_| 0.6 * normal.sample(&mut rng)))
        .collect();
    let item_b: Vec<f32> = (0..n_items)
        .map(|_| 0.4 * normal.sample(&mut rng))
        .collect();

    let mut users = Vec::with_capacity(n_users);
    let mut ratings = Vec::new();
    for u in 0..n_users {
        let user_id = u as i64 + 1;
        users.push(User {
            user_id,
            name: format!(
                "{} {}",
                FIRST.choose(&mut rng).unwrap_or(&"Ada"),
                LAST.choose(&mut rng).unwrap_or(&"Meyer")
            ),
            country: COUNTRIES[rng.random_range(0..COUNTRIES.len())],
            signup_at: EPOCH - rng.random_range(30..720) * DAY,
        });
        // Taste: a strong liking for one or two categories, latent factors, a personal bias.
        let taste: Vec<f32> = (0..CATEGORIES.len())
            .map(|_| 0.5 * normal.sample(&mut rng))
            .collect::<Vec<_>>();
        let fav = rng.random_range(0..CATEGORIES.len());
        let uf: [f32; K] = std::array::from_fn(|_| 0.6 * normal.sample(&mut rng));
        let ub = 0.3 * normal.sample(&mut rng);
        // How many items, and which: favourites are far more likely to be rated.
        let n_rated = rng.random_range(5..=(n_items / 3).max(6));
        let weights: Vec<f32> = (0..n_items)
            .map(|i| {
                let c = i % CATEGORIES.len();
                (taste[c] + if c == fav { 1.5 } else { 0.0 }).exp()
            })
            .collect();
        let mut chosen = vec![false; n_items];
        let total: f32 = weights.iter().sum();
        let last_active = rng.random_range(0..60); // days before EPOCH + 60
        let mut picked = 0;
        let mut guard = 0;
        while picked < n_rated && guard < n_items * 20 {
            guard += 1;
            let mut x = rng.random::<f32>() * total;
            let mut i = 0;
            while i + 1 < n_items && x > weights[i] {
                x -= weights[i];
                i += 1;
            }
            if chosen[i] {
                continue;
            }
            chosen[i] = true;
            picked += 1;
            let c = i % CATEGORIES.len();
            let affinity = taste[c] + if c == fav { 0.8 } else { 0.0 };
            let dot: f32 = uf.iter().zip(&item_f[i]).map(|(a, b)| a * b).sum();
            let r = 3.4 + ub + item_b[i] + 0.6 * affinity + dot + 0.5 * normal.sample(&mut rng);
            ratings.push(Rating {
                user_id,
                item_id: i as i64 + 1,
                rating: r.round().clamp(1.0, 5.0),
                rated_at: EPOCH + (60 - last_active) * DAY - rng.random_range(0..120) * DAY,
            });
        }
    }

    // A two-arm campaign over two weeks promoting the "outdoor" items.
    let starts_at = EPOCH + 30 * DAY;
    let campaign = Campaign {
        campaign: "spring_outdoor",
        channel: "email",
        starts_at,
        ends_at: starts_at + 14 * DAY,
        cost: 1500.0,
        items: items
            .iter()
            .filter(|i| i.category == "outdoor")
            .map(|i| i.item_id)
            .collect(),
    };
    let mut events = Vec::new();
    let mut feedback = Vec::new();
    for user in &users {
        // 80% of users enter the campaign, split evenly between arms.
        if rng.random::<f64>() >= 0.8 {
            continue;
        }
        let arm = if rng.random::<bool>() {
            "treatment"
        } else {
            "control"
        };
        let (p_click, p_convert) = if arm == "treatment" {
            (0.09, 0.30)
        } else {
            (0.06, 0.22)
        };
        let exposures = rng.random_range(1..=4);
        let mut converted = false;
        for _ in 0..exposures {
            let t = starts_at + rng.random_range(0..14 * DAY);
            events.push(Event {
                user_id: user.user_id,
                arm,
                event: "exposure",
                value: None,
                occurred_at: t,
            });
            if rng.random::<f64>() < p_click {
                events.push(Event {
                    user_id: user.user_id,
                    arm,
                    event: "click",
                    value: None,
                    occurred_at: t + 60,
                });
                if !converted && rng.random::<f64>() < p_convert {
                    converted = true;
                    let item = campaign.items.choose(&mut rng).copied().unwrap_or(1);
                    let price = items[(item - 1) as usize].price;
                    events.push(Event {
                        user_id: user.user_id,
                        arm,
                        event: "conversion",
                        value: Some(price),
                        occurred_at: t + 600,
                    });
                    let happy = rng.random::<f64>() < if arm == "treatment" { 0.75 } else { 0.65 };
                    let templates = if happy { &POSITIVE } else { &NEGATIVE };
                    let title = &items[(item - 1) as usize].title;
                    let body = templates
                        .choose(&mut rng)
                        .unwrap_or(&POSITIVE[0])
                        .replace("{t}", title);
                    feedback.push(Feedback {
                        user_id: user.user_id,
                        item_id: item,
                        campaign: Some(campaign.campaign),
                        body,
                        created_at: t + 3 * DAY,
                    });
                }
            }
        }
    }
    // Purchases in the 30 days before the campaign, outside any campaign: the users who buy in
    // the campaign bought more often before, as real customers do (the pre-period covariate
    // that CUPED uses). From a second generator, so that the data above stays as it was.
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed ^ 0x0c0f_fee5_eed5);
    let converted: std::collections::HashSet<i64> = events
        .iter()
        .filter(|e| e.event == "conversion")
        .map(|e| e.user_id)
        .collect();
    let mut organic = Vec::new();
    for user in &users {
        let p = if converted.contains(&user.user_id) {
            0.6
        } else {
            0.15
        };
        let mut buys = 0;
        while buys < 3 && rng.random::<f64>() < p {
            buys += 1;
            let item = &items[rng.random_range(0..items.len())];
            organic.push(Event {
                user_id: user.user_id,
                arm: "",
                event: "conversion",
                value: Some(item.price),
                occurred_at: starts_at - rng.random_range(DAY..30 * DAY),
            });
        }
    }
    Demo {
        users,
        items,
        ratings,
        campaign,
        events,
        feedback,
        organic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let a = generate(&DemoConfig::default());
        let b = generate(&DemoConfig::default());
        assert_eq!(a, b);
        let c = generate(&DemoConfig {
            seed: 7,
            ..Default::default()
        });
        assert_ne!(a.ratings, c.ratings);
    }

    #[test]
    fn data_is_consistent() {
        let d = generate(&DemoConfig::default());
        assert_eq!(d.users.len(), 500);
        assert_eq!(d.items.len(), 120);
        assert!(d.ratings.len() > 500 * 5);
        assert!(d
            .ratings
            .iter()
            .all(|r| (1.0..=5.0).contains(&r.rating) && r.rating.fract() == 0.0));
        let mut pairs: Vec<(i64, i64)> = d.ratings.iter().map(|r| (r.user_id, r.item_id)).collect();
        pairs.sort_unstable();
        pairs.dedup();
        assert_eq!(pairs.len(), d.ratings.len(), "one rating per (user, item)");
        let arms: std::collections::HashSet<&str> = d.events.iter().map(|e| e.arm).collect();
        assert_eq!(arms.len(), 2);
        assert!(d
            .events
            .iter()
            .any(|e| e.event == "conversion" && e.value.is_some()));
        assert!(!d.feedback.is_empty());
        assert!(d
            .events
            .iter()
            .all(|e| e.occurred_at >= d.campaign.starts_at
                && e.occurred_at < d.campaign.ends_at + DAY));
    }

    #[test]
    fn ratings_carry_learnable_signal() {
        // A model trained on the demo ratings must beat predicting the global mean on held-out rows.
        let d = generate(&DemoConfig::default());
        let rows: Vec<(i64, i64, f32)> = d
            .ratings
            .iter()
            .map(|r| (r.user_id, r.item_id, r.rating))
            .collect();
        let (train_rows, test_rows): (Vec<_>, Vec<_>) =
            rows.iter().enumerate().partition(|(n, _)| n % 5 != 0);
        let train_rows: Vec<_> = train_rows.into_iter().map(|(_, r)| *r).collect();
        let ds = Dataset::from_triples(&train_rows).unwrap();
        let m = train(
            &ds,
            Algorithm::Svdpp,
            "{}",
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let (mut se_model, mut se_mean) = (0f32, 0f32);
        for (_, &(u, i, r)) in &test_rows {
            se_model += (m.predict(u, i) - r).powi(2);
            se_mean += (ds.global_mean - r).powi(2);
        }
        assert!(
            se_model < 0.8 * se_mean,
            "model {se_model} vs mean {se_mean}"
        );
    }
}
