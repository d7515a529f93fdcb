//! Scores a model version already computed, by text: the campaign and user reports average the
//! sentiment of the same feedback texts on every call, and each text needs scoring only once per
//! model version. The caller keeps one memo per loaded model version (a new version starts
//! empty); the memo holds at most a byte budget of texts and forgets everything when it is full.

use std::collections::HashMap;

use crate::Result;

/// Remembered scores of one model version.
#[derive(Debug)]
pub struct ScoreMemo {
    scores: HashMap<String, f32>,
    /// Bytes of the remembered texts.
    bytes: usize,
    budget: usize,
    /// Texts answered from memory, and texts that had to be scored.
    pub hits: u64,
    pub misses: u64,
}

impl ScoreMemo {
    /// An empty memo that holds at most `budget` bytes of texts.
    pub fn with_budget(budget: usize) -> ScoreMemo {
        ScoreMemo {
            scores: HashMap::new(),
            bytes: 0,
            budget,
            hits: 0,
            misses: 0,
        }
    }

    /// Number of remembered texts.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The score of each of `texts`, in order: remembered ones from memory, the others from one
    /// call of `score` (each distinct missing text once, in first-seen order), then remembered.
    /// An error of `score` is returned and nothing new is remembered.
    pub fn scores(
        &mut self,
        texts: &[&str],
        score: impl FnOnce(&[&str]) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen_missing: HashMap<&str, ()> = HashMap::new();
        for &t in texts {
            if !self.scores.contains_key(t) && seen_missing.insert(t, ()).is_none() {
                missing.push(t);
            }
        }
        self.misses += missing.len() as u64;
        self.hits += (texts.len() - missing.len()) as u64;
        let fresh: HashMap<&str, f32> = if missing.is_empty() {
            HashMap::new()
        } else {
            let got = score(&missing)?;
            missing.iter().copied().zip(got).collect()
        };
        let out = texts
            .iter()
            .map(|t| {
                self.scores
                    .get(*t)
                    .or_else(|| fresh.get(t))
                    .copied()
                    .unwrap_or(f32::NAN)
            })
            .collect();
        let added: usize = fresh.keys().map(|t| t.len()).sum();
        if self.bytes + added > self.budget {
            self.scores.clear();
            self.bytes = 0;
        }
        if added <= self.budget {
            for (t, s) in fresh {
                self.scores.insert(t.to_string(), s);
            }
            self.bytes += added;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoreError;

    fn lengths(texts: &[&str]) -> Result<Vec<f32>> {
        Ok(texts.iter().map(|t| t.len() as f32).collect())
    }

    #[test]
    fn each_text_is_scored_once_and_order_is_kept() {
        let mut memo = ScoreMemo::with_budget(1 << 20);
        let mut asked: Vec<String> = Vec::new();
        let got = memo
            .scores(&["aa", "b", "aa", "cccc"], |t| {
                asked.extend(t.iter().map(|s| s.to_string()));
                lengths(t)
            })
            .unwrap();
        assert_eq!(got, vec![2.0, 1.0, 2.0, 4.0]);
        assert_eq!(asked, vec!["aa", "b", "cccc"]);
        assert_eq!((memo.hits, memo.misses, memo.len()), (1, 3, 3));
        // Again: nothing is scored.
        let got = memo
            .scores(&["cccc", "b"], |_| panic!("everything is remembered"))
            .unwrap();
        assert_eq!(got, vec![4.0, 1.0]);
        assert_eq!((memo.hits, memo.misses), (3, 3));
    }

    #[test]
    fn a_full_memo_forgets_and_an_error_remembers_nothing() {
        let mut memo = ScoreMemo::with_budget(5);
        memo.scores(&["abc"], lengths).unwrap();
        assert_eq!(memo.len(), 1);
        // 3 + 4 bytes exceed the budget: forget, then remember the new text.
        memo.scores(&["defg"], lengths).unwrap();
        assert_eq!(memo.len(), 1);
        assert_eq!(
            memo.scores(&["defg"], |_| panic!("remembered")).unwrap(),
            vec![4.0]
        );
        // A text larger than the whole budget is scored but not kept.
        memo.scores(&["a very long text"], lengths).unwrap();
        assert!(memo.is_empty());
        let err = memo
            .scores(&["x"], |_| Err(CoreError::Cancelled))
            .unwrap_err();
        assert_eq!(err, CoreError::Cancelled);
        assert!(memo.is_empty());
    }
}
