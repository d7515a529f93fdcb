//! Held-out splits over row indices `0..n`: the caller keeps its rows in one array and uses the
//! returned indices to pick the training and test rows. Both splits are deterministic for a seed,
//! and both return each part in ascending index order.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::{CoreError, Result};

/// Train and test row indices, each ascending.
pub type Split = (Vec<usize>, Vec<usize>);

fn check_fraction(test_fraction: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&test_fraction) {
        return Err(CoreError::InvalidParameter(format!(
            "test_fraction must be between 0 and 1, got {test_fraction}"
        )));
    }
    Ok(())
}

/// Rows in the test part for `n` rows: `round(test_fraction × n)`, halves rounded away from zero.
fn test_count(n: usize, test_fraction: f64) -> usize {
    ((test_fraction * n as f64).round() as usize).min(n)
}

/// Splits rows `0..n_rows` at random: `round(test_fraction × n_rows)` rows go to the test part.
/// Fails when `test_fraction` is not within `[0, 1]`.
pub fn random_split(n_rows: usize, test_fraction: f64, seed: u64) -> Result<Split> {
    check_fraction(test_fraction)?;
    let mut rows: Vec<usize> = (0..n_rows).collect();
    rows.shuffle(&mut Pcg64Mcg::seed_from_u64(seed));
    let mut train = rows.split_off(test_count(n_rows, test_fraction));
    let mut test = rows;
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

/// Splits rows per user, like Microsoft Recommenders' `python_stratified_split` (there with
/// `ratio = 1 − test_fraction`): each user's rows (`users[row]` is the row's user) are shuffled and
/// `round(test_fraction × n)` of them go to the test part, but always at least one stays in
/// training, so every kept user is in the training part.
///
/// Users with fewer than `min_rows_per_user` rows are dropped from both parts (Recommenders'
/// `min_rating` filter; 0 or 1 keeps everyone).
///
/// Differences from Recommenders: it puts `n − floor(ratio × n)` rows in test (the ceiling, e.g.
/// a user's only row), where this rounds and keeps one row in training. Each user's shuffle is
/// seeded from `seed` and the user id, so a user's split does not depend on the other users.
pub fn stratified_split(
    users: &[i64],
    test_fraction: f64,
    seed: u64,
    min_rows_per_user: usize,
) -> Result<Split> {
    check_fraction(test_fraction)?;
    // Row indices grouped by user; the stable sort keeps each user's rows in index order.
    let mut order: Vec<usize> = (0..users.len()).collect();
    order.sort_by_key(|&r| users[r]);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for group in order.chunk_by_mut(|&a, &b| users[a] == users[b]) {
        let n = group.len();
        if n < min_rows_per_user {
            continue;
        }
        let user = users[group[0]];
        group.shuffle(&mut Pcg64Mcg::seed_from_u64(mix(seed, user)));
        let n_test = test_count(n, test_fraction).min(n - 1);
        test.extend_from_slice(&group[..n_test]);
        train.extend_from_slice(&group[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

/// A per-user seed: SplitMix64's finaliser over the seed and the user id.
fn mix(seed: u64, user: i64) -> u64 {
    let mut z = seed ^ (user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn random_split_is_deterministic_and_a_partition() {
        let (tr, te) = random_split(1000, 0.2, 7).unwrap();
        assert_eq!(te.len(), 200);
        assert_eq!(tr.len(), 800);
        let all: HashSet<usize> = tr.iter().chain(&te).copied().collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(
            random_split(1000, 0.2, 7).unwrap(),
            (tr.clone(), te.clone())
        );
        assert_ne!(random_split(1000, 0.2, 8).unwrap().1, te);
        assert!(tr.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn random_split_edges() {
        assert_eq!(random_split(0, 0.5, 1).unwrap(), (vec![], vec![]));
        assert_eq!(random_split(3, 0.0, 1).unwrap().1.len(), 0);
        assert_eq!(random_split(3, 1.0, 1).unwrap().0.len(), 0);
        assert!(random_split(3, 1.5, 1).is_err());
        assert!(random_split(3, -0.1, 1).is_err());
        assert!(random_split(3, f64::NAN, 1).is_err());
    }

    #[test]
    fn stratified_split_per_user_fractions() {
        // User 1: 8 rows, user 2: 4 rows, user 3: 1 row, user 4: 2 rows; interleaved.
        let mut users = Vec::new();
        for (u, n) in [(1i64, 8usize), (2, 4), (3, 1), (4, 2)] {
            users.extend(std::iter::repeat_n(u, n));
        }
        users.reverse();
        users.swap(0, 7);
        let (tr, te) = stratified_split(&users, 0.25, 42, 1).unwrap();
        let count = |rows: &[usize]| {
            let mut m: HashMap<i64, usize> = HashMap::new();
            for &r in rows {
                *m.entry(users[r]).or_default() += 1;
            }
            m
        };
        let (ctr, cte) = (count(&tr), count(&te));
        // round(0.25 × 8) = 2, round(0.25 × 4) = 1, round(0.25) = 0, round(0.5) = 1 but one stays.
        assert_eq!(cte.get(&1), Some(&2));
        assert_eq!(cte.get(&2), Some(&1));
        assert_eq!(cte.get(&3), None);
        assert_eq!(cte.get(&4), Some(&1));
        for u in [1, 2, 3, 4] {
            assert!(
                ctr.get(&u).copied().unwrap_or(0) >= 1,
                "user {u} missing from train"
            );
        }
        assert_eq!(tr.len() + te.len(), users.len());
        assert_eq!(stratified_split(&users, 0.25, 42, 1).unwrap(), (tr, te));
    }

    #[test]
    fn stratified_split_keeps_one_training_row_and_filters() {
        let users = [5i64, 5, 5, 6];
        let (tr, te) = stratified_split(&users, 1.0, 0, 0).unwrap();
        assert_eq!(te.len(), 2);
        assert_eq!(tr.len(), 2);
        // min 2 rows per user drops user 6.
        let (tr, te) = stratified_split(&users, 0.5, 0, 2).unwrap();
        assert!(!tr.contains(&3) && !te.contains(&3));
        assert_eq!(tr.len() + te.len(), 3);
        assert!(stratified_split(&users, 2.0, 0, 0).is_err());
        assert_eq!(stratified_split(&[], 0.3, 0, 0).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn stratified_split_is_deterministic_and_seed_dependent() {
        let users: Vec<i64> = (0..2000).map(|r| (r % 37) as i64).collect();
        let a = stratified_split(&users, 0.3, 1, 1).unwrap();
        assert_eq!(a, stratified_split(&users, 0.3, 1, 1).unwrap());
        assert_ne!(a.1, stratified_split(&users, 0.3, 2, 1).unwrap().1);
        let frac = a.1.len() as f64 / users.len() as f64;
        assert!((frac - 0.3).abs() < 0.02, "{frac}");
    }
}
