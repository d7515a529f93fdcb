//! The training data of a collaborative-filtering model: external ids mapped to dense indices, and
//! the ratings stored twice in compressed sparse rows (by user and by item) so that every algorithm
//! can walk a user's or an item's ratings without a hash lookup.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// External `bigint` ids mapped to dense `u32` indices, in first-seen order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<i64>", into = "Vec<i64>")]
pub struct IdMap {
    ids: Vec<i64>,
    /// FxHash: ids are integers chosen by the user, not by an attacker; the lookup sits on the
    /// per-row path of `cf_predict`.
    index: FxHashMap<i64, u32>,
}

impl From<Vec<i64>> for IdMap {
    fn from(ids: Vec<i64>) -> Self {
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        IdMap { ids, index }
    }
}

/// Two maps are equal when they hold the same ids in the same order (the index follows).
impl PartialEq for IdMap {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids
    }
}

impl From<IdMap> for Vec<i64> {
    fn from(m: IdMap) -> Self {
        m.ids
    }
}

impl IdMap {
    /// The dense index of `id`, inserting it if new.
    pub fn intern(&mut self, id: i64) -> u32 {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id);
        self.index.insert(id, i);
        i
    }
    /// The dense index of `id`, if known.
    #[inline]
    pub fn get(&self, id: i64) -> Option<u32> {
        self.index.get(&id).copied()
    }
    /// The external id of dense index `idx`.
    #[inline]
    pub fn id(&self, idx: u32) -> i64 {
        self.ids[idx as usize]
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }
    /// Whether every id is distinct (a decoded map may hold anything).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.index.len() != self.ids.len() {
            return Err("an id appears twice".into());
        }
        Ok(())
    }
}

/// Compressed sparse rows: row `r` holds columns `idx[ptr[r]..ptr[r+1]]` (sorted) with values `val[..]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Csr {
    pub ptr: Vec<u32>,
    pub idx: Vec<u32>,
    pub val: Vec<f32>,
}

impl Csr {
    /// The same entries with every value 1: which columns each row has, not their values. What
    /// a model keeps of the ratings it does not predict from.
    pub fn pattern(&self) -> Csr {
        Csr {
            ptr: self.ptr.clone(),
            idx: self.idx.clone(),
            val: vec![1.0; self.idx.len()],
        }
    }

    /// Whether these are well-formed rows of an `n_rows × n_cols` matrix: `n_rows + 1`
    /// ascending row pointers from 0 to the entry count, one value per entry, and in each row
    /// strictly ascending columns below `n_cols`. Decoded bytes are checked with it before any
    /// index is used.
    pub fn check(&self, n_rows: usize, n_cols: usize) -> std::result::Result<(), String> {
        if self.ptr.len() != n_rows + 1 || self.ptr.first() != Some(&0) {
            return Err("row pointers do not match the rows".into());
        }
        if self.ptr.windows(2).any(|w| w[0] > w[1])
            || self.ptr.last().map(|&p| p as usize) != Some(self.idx.len())
            || self.idx.len() != self.val.len()
        {
            return Err("inconsistent row pointers".into());
        }
        for w in self.ptr.windows(2) {
            let cols = &self.idx[w[0] as usize..w[1] as usize];
            if cols.windows(2).any(|c| c[0] >= c[1])
                || cols.last().is_some_and(|&c| c as usize >= n_cols)
            {
                return Err("columns unsorted or out of range".into());
            }
        }
        Ok(())
    }

    /// Builds rows from `(row, col, value)` triples that are sorted by `(row, col)` with no duplicates.
    fn from_sorted(
        n_rows: usize,
        triples: impl Iterator<Item = (u32, u32, f32)>,
        nnz: usize,
    ) -> Csr {
        let mut ptr = vec![0u32; n_rows + 1];
        let mut idx = Vec::with_capacity(nnz);
        let mut val = Vec::with_capacity(nnz);
        for (r, c, v) in triples {
            ptr[r as usize + 1] += 1;
            idx.push(c);
            val.push(v);
        }
        for r in 0..n_rows {
            ptr[r + 1] += ptr[r];
        }
        Csr { ptr, idx, val }
    }
    /// Builds rows from unsorted triples; of repeated `(row, col)` pairs the first one is kept.
    pub fn from_triples(n_rows: usize, mut t: Vec<(u32, u32, f32)>) -> Csr {
        t.sort_by_key(|&(r, c, _)| (r, c));
        t.dedup_by_key(|&mut (r, c, _)| (r, c));
        let nnz = t.len();
        Csr::from_sorted(n_rows, t.into_iter(), nnz)
    }
    #[inline]
    pub fn n_rows(&self) -> usize {
        self.ptr.len().saturating_sub(1)
    }
    #[inline]
    pub fn nnz(&self) -> usize {
        self.idx.len()
    }
    /// Columns and values of row `r`.
    #[inline]
    pub fn row(&self, r: u32) -> (&[u32], &[f32]) {
        let (a, b) = (
            self.ptr[r as usize] as usize,
            self.ptr[r as usize + 1] as usize,
        );
        (&self.idx[a..b], &self.val[a..b])
    }
    #[inline]
    pub fn row_len(&self, r: u32) -> usize {
        (self.ptr[r as usize + 1] - self.ptr[r as usize]) as usize
    }
    /// The value at `(r, c)`, by binary search in the sorted row.
    pub fn get(&self, r: u32, c: u32) -> Option<f32> {
        let (cols, vals) = self.row(r);
        cols.binary_search(&c).ok().map(|k| vals[k])
    }
    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.ptr.len() * 4 + self.idx.len() * 4 + self.val.len() * 4
    }
}

/// A training set: ids, ratings by user and by item, and the rating scale seen.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub users: IdMap,
    pub items: IdMap,
    /// rows = users, columns = items.
    pub by_user: Csr,
    /// rows = items, columns = users.
    pub by_item: Csr,
    pub global_mean: f32,
    pub min_rating: f32,
    pub max_rating: f32,
    /// What the builder merged or skipped, for the training summary.
    pub counts: BuildCounts,
}

/// What happened to the input rows while building a [`Dataset`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildCounts {
    /// Rows given to the builder.
    pub rows: u64,
    /// Rows skipped because the rating was NULL or not finite.
    pub skipped_null: u64,
    /// Rows skipped because the rating was outside the declared scale.
    pub skipped_out_of_range: u64,
    /// Rows that repeated a (user, item) pair already seen; their ratings were averaged into one.
    pub duplicates_merged: u64,
}

impl Dataset {
    pub fn n_users(&self) -> usize {
        self.users.len()
    }
    pub fn n_items(&self) -> usize {
        self.items.len()
    }
    pub fn n_ratings(&self) -> usize {
        self.by_user.nnz()
    }
    /// All ratings as `(user, item, rating)` in user order.
    pub fn triples(&self) -> impl Iterator<Item = (u32, u32, f32)> + '_ {
        (0..self.n_users() as u32).flat_map(move |u| {
            let (items, vals) = self.by_user.row(u);
            items.iter().zip(vals).map(move |(&i, &r)| (u, i, r))
        })
    }
    /// Convenience for tests and benchmarks: a data set from `(user, item, rating)` rows.
    pub fn from_triples(rows: &[(i64, i64, f32)]) -> Result<Dataset> {
        let mut b = DatasetBuilder::new();
        for &(u, i, r) in rows {
            b.push(u, i, Some(r));
        }
        b.build()
    }
}

/// Accumulates rows in whatever order they come and builds a [`Dataset`].
///
/// Rules, documented in the README: a NULL or non-finite rating is skipped and counted; a rating
/// outside `[min, max]` (when a scale is declared) is skipped and counted; repeated (user, item)
/// pairs are merged into one rating, their mean, and counted.
#[derive(Debug, Default)]
pub struct DatasetBuilder {
    users: IdMap,
    items: IdMap,
    triples: Vec<(u32, u32, f32)>,
    scale: Option<(f32, f32)>,
    counts: BuildCounts,
}

impl DatasetBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Declares the valid rating scale; ratings outside it are skipped and counted.
    pub fn with_scale(mut self, min: f32, max: f32) -> Self {
        self.scale = Some((min, max));
        self
    }
    pub fn reserve(&mut self, n: usize) {
        self.triples.reserve(n);
    }
    /// Adds one row. `None` is a NULL rating (skipped, counted).
    pub fn push(&mut self, user: i64, item: i64, rating: Option<f32>) {
        self.counts.rows += 1;
        let r = match rating {
            Some(r) if r.is_finite() => r,
            _ => {
                self.counts.skipped_null += 1;
                return;
            }
        };
        if let Some((lo, hi)) = self.scale {
            if r < lo || r > hi {
                self.counts.skipped_out_of_range += 1;
                return;
            }
        }
        let u = self.users.intern(user);
        let i = self.items.intern(item);
        self.triples.push((u, i, r));
    }
    pub fn counts(&self) -> BuildCounts {
        self.counts
    }

    /// Sorts, merges duplicates and builds both row orders. Fails on an empty set.
    pub fn build(self) -> Result<Dataset> {
        let DatasetBuilder {
            users,
            items,
            mut triples,
            counts: mut c,
            ..
        } = self;
        if triples.is_empty() {
            return Err(CoreError::InvalidData(format!(
                "no usable ratings: {} rows read, {} with NULL ratings, {} outside the rating scale",
                c.rows, c.skipped_null, c.skipped_out_of_range
            )));
        }
        triples.sort_unstable_by_key(|&(u, i, _)| (u, i));
        // Merge duplicates into their mean, in place (no second copy of every rating).
        let mut run = 1u32;
        let mut merged = triples;
        merged.dedup_by(|later, kept| {
            if later.0 == kept.0 && later.1 == kept.1 {
                run += 1;
                kept.2 += (later.2 - kept.2) / run as f32;
                c.duplicates_merged += 1;
                true
            } else {
                run = 1;
                false
            }
        });
        let nnz = merged.len();
        let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
        for &(_, _, r) in &merged {
            lo = lo.min(r);
            hi = hi.max(r);
            sum += r as f64;
        }
        let by_user = Csr::from_sorted(users.len(), merged.iter().copied(), nnz);
        let mut t: Vec<(u32, u32, f32)> = merged.into_iter().map(|(u, i, r)| (i, u, r)).collect();
        t.sort_unstable_by_key(|&(i, u, _)| (i, u));
        let by_item = Csr::from_sorted(items.len(), t.into_iter(), nnz);
        Ok(Dataset {
            users,
            items,
            by_user,
            by_item,
            global_mean: (sum / nnz as f64) as f32,
            min_rating: lo,
            max_rating: hi,
            counts: c,
        })
    }
}

/// Parses MovieLens-style `user<TAB>item<TAB>rating[<TAB>...]` lines (ml-100k's `u.data` and
/// `uN.base/test`), skipping lines that do not parse. For tests, examples and benchmarks.
pub fn parse_tab_ratings(text: &str) -> Vec<(i64, i64, f32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_orders_and_merges_duplicates() {
        let mut b = DatasetBuilder::new().with_scale(1.0, 5.0);
        b.push(10, 100, Some(4.0));
        b.push(20, 100, Some(2.0));
        b.push(10, 200, Some(5.0));
        b.push(10, 100, Some(2.0)); // duplicate: merged into mean 3.0
        b.push(30, 300, None); // NULL: skipped
        b.push(30, 300, Some(9.0)); // out of range: skipped
        let d = b.build().unwrap();
        assert_eq!(d.n_users(), 2);
        assert_eq!(d.n_items(), 2);
        assert_eq!(d.n_ratings(), 3);
        assert_eq!(d.counts.duplicates_merged, 1);
        assert_eq!(d.counts.skipped_null, 1);
        assert_eq!(d.counts.skipped_out_of_range, 1);
        let u10 = d.users.get(10).unwrap();
        let i100 = d.items.get(100).unwrap();
        assert_eq!(d.by_user.get(u10, i100), Some(3.0));
        assert_eq!(d.by_item.get(i100, u10), Some(3.0));
        assert_eq!(d.by_item.row_len(i100), 2);
        assert!((d.global_mean - (3.0 + 2.0 + 5.0) / 3.0).abs() < 1e-6);
        assert_eq!((d.min_rating, d.max_rating), (2.0, 5.0));
        assert_eq!(d.triples().count(), 3);
    }

    #[test]
    fn parses_tab_separated_ratings() {
        let rows = parse_tab_ratings("1\t2\t3\t881250949\nbad line\n4\t5\t4.5\n");
        assert_eq!(rows, vec![(1, 2, 3.0), (4, 5, 4.5)]);
    }

    #[test]
    fn empty_input_is_an_error_that_counts_rows() {
        let mut b = DatasetBuilder::new();
        b.push(1, 1, None);
        let e = b.build().unwrap_err();
        assert!(e.to_string().contains("1 rows read, 1 with NULL"), "{e}");
    }

    #[test]
    fn idmap_round_trips_through_serde() {
        let mut m = IdMap::default();
        m.intern(42);
        m.intern(-7);
        let bytes = postcard::to_allocvec(&m).unwrap();
        let back: IdMap = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.get(-7), Some(1));
        assert_eq!(back.id(0), 42);
    }
}
