//! Tokenisation and batching, independent of the inference engine.
//!
//! As in Hugging Face text-embeddings-inference, the texts of one call are tokenised first, then
//! sorted by token count (longest first) and cut into batches bounded both by a number of texts
//! and by a token budget (texts × padded length), each batch padded to its own longest text. The
//! backend sees only [`PaddedBatch`]es; the caller puts the results back in input order.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokenizers::{
    PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::{CoreError, Result};

/// Largest `max_length` accepted: far beyond any BERT-family position table, well below sizes
/// whose padded batches could overflow anything.
pub const MAX_SEQUENCE_LENGTH: usize = 8192;

/// A text after tokenisation: ids and token type ids, truncated, unpadded, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, special tokens included.
    pub ids: Vec<i64>,
    /// Segment ids (all 0 for a single text with BERT's template).
    pub type_ids: Vec<i64>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no tokens (never the case for what [`TextEncoder::encode`] returns).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A Hugging Face tokenizer configured for the runtime: truncation at `max_length` (special
/// tokens included), no padding (batches are padded here), special tokens added.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
    pad_id: u32,
    fallback_id: u32,
    vocab_size: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("max_length", &self.max_length)
            .field("pad_id", &self.pad_id)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

/// Pad tokens of the common families, tried in this order when the tokenizer has no padding
/// setting of its own.
const PAD_TOKENS: [&str; 3] = ["[PAD]", "<pad>", "<|pad|>"];
const UNK_TOKENS: [&str; 3] = ["[UNK]", "<unk>", "<|unk|>"];

impl TextEncoder {
    /// Parses a `tokenizer.json` and overrides its truncation (to `max_length`) and padding (off).
    ///
    /// The pad id is the one of the file's own padding setting if it has one, else the id of
    /// `[PAD]`, `<pad>` or `<|pad|>`, else 0. (It matters for RoBERTa-style graphs, which derive
    /// position ids from the non-pad tokens.)
    pub fn from_bytes(tokenizer_json: &[u8], max_length: usize) -> Result<TextEncoder> {
        if !(2..=MAX_SEQUENCE_LENGTH).contains(&max_length) {
            return Err(CoreError::InvalidParameter(format!(
                "max_length must be between 2 and {MAX_SEQUENCE_LENGTH}, got {max_length}"
            )));
        }
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json).map_err(|e| {
            CoreError::CorruptTokenizer(format!("cannot parse tokenizer.json: {e}"))
        })?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| PAD_TOKENS.iter().find_map(|t| tokenizer.token_to_id(t)))
            .unwrap_or(0);
        let fallback_id = UNK_TOKENS
            .iter()
            .find_map(|t| tokenizer.token_to_id(t))
            .unwrap_or(pad_id);
        let added = tokenizer
            .get_post_processor()
            .map(|p| tokenizers::PostProcessor::added_tokens(p, false))
            .unwrap_or(0);
        if max_length <= added {
            return Err(CoreError::InvalidParameter(format!(
                "max_length {max_length} leaves no room for text: the tokenizer adds {added} special tokens"
            )));
        }
        tokenizer.with_padding(None::<PaddingParams>);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| CoreError::InvalidParameter(format!("cannot set truncation: {e}")))?;
        let vocab_size = tokenizer.get_vocab_size(true);
        Ok(TextEncoder {
            tokenizer,
            max_length,
            pad_id,
            fallback_id,
            vocab_size,
        })
    }

    /// Truncation length, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Number of ids the tokenizer can produce (model vocabulary plus added tokens).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The largest id the tokenizer can produce (`vocab_size - 1`, or 0 for an empty vocabulary).
    pub fn max_id(&self) -> u32 {
        let from_vocab = self.vocab_size.saturating_sub(1);
        // Added tokens may sit at ids past the model vocabulary's size: look at them too.
        let from_added = self
            .tokenizer
            .get_added_tokens_decoder()
            .keys()
            .copied()
            .max()
            .unwrap_or(0);
        u32::try_from(from_vocab)
            .unwrap_or(u32::MAX)
            .max(from_added)
    }

    /// Tokenises one text: special tokens added, truncated to `max_length`.
    ///
    /// Any Unicode is accepted (unknown characters become the unknown token). The empty text
    /// gives the special tokens alone (`[CLS] [SEP]` for BERT); should a tokenizer produce no
    /// token at all, the sequence is the single unknown token (or pad token), so that every text
    /// gets a result.
    ///
    /// A text much longer than `max_length` tokens can use is tokenised from a prefix that ends
    /// where a word ends, grown until it gives more than `max_length` tokens: the first tokens
    /// of a text do not depend on the words after them, so the result is the same as from the
    /// whole text, at a cost bounded by `max_length` instead of the text's size (a 10 MB text
    /// took about 1 GB to tokenise whole).
    ///
    /// One exception, so that no input costs more than that bound: a single word (a run without
    /// whitespace) that reaches past [`GIANT_WORD_BYTES_PER_TOKEN`] × `max_length` bytes from the
    /// start is cut there, at a character boundary. Such a "word" (a 10 MB string without
    /// spaces) is not language; BERT's WordPiece turns any word over 100 characters into the
    /// single unknown token either way, other tokenizers may split its cut end differently.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let mut budget = self.max_length.saturating_mul(PREFIX_BYTES_PER_TOKEN);
        let giant = self.max_length.saturating_mul(GIANT_WORD_BYTES_PER_TOKEN);
        let encoding = loop {
            if text.len() <= budget {
                break self.tokenize(text)?;
            }
            // A word end in the window's second half; else the word across the cut is long.
            let prefix = word_prefix(text, budget).filter(|p| p.len() >= budget / 2);
            let (prefix, cut_in_word) = match prefix {
                Some(p) => (p, false),
                None if budget >= giant => (char_prefix(text, budget), true),
                None => {
                    budget = budget.saturating_mul(4);
                    continue;
                }
            };
            let encoding = self.tokenize(prefix)?;
            if cut_in_word || !encoding.get_overflowing().is_empty() {
                break encoding;
            }
            budget = budget.saturating_mul(4);
        };
        Ok(self.finish(&encoding))
    }

    /// The tokenizer's own encoding of `text` (truncated, with its overflow).
    fn tokenize(&self, text: &str) -> Result<tokenizers::Encoding> {
        catch_unwind(AssertUnwindSafe(|| self.tokenizer.encode_fast(text, true)))
            .map_err(|_| CoreError::InvalidData("the tokenizer failed on a text".into()))?
            .map_err(|e| CoreError::InvalidData(format!("cannot tokenise a text: {e}")))
    }

    /// Ids and type ids of an encoding, at most `max_length`, never empty.
    fn finish(&self, encoding: &tokenizers::Encoding) -> Encoded {
        let mut ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i64::from(i)).collect();
        let mut type_ids: Vec<i64> = encoding
            .get_type_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect();
        // Defensive: truncation is configured, but never hand the graph more than max_length.
        ids.truncate(self.max_length);
        type_ids.resize(ids.len(), 0);
        if ids.is_empty() {
            ids.push(i64::from(self.fallback_id));
            type_ids.push(0);
        }
        Encoded { ids, type_ids }
    }
}

/// Bytes of text tried first per token of `max_length` when a long text is tokenised from a
/// prefix (a token rarely stands for more than a dozen bytes; the prefix grows fourfold when
/// it falls short).
const PREFIX_BYTES_PER_TOKEN: usize = 16;

/// Bytes per token of `max_length` past which a single word is cut (256 KB at 256 tokens).
pub const GIANT_WORD_BYTES_PER_TOKEN: usize = 1024;

/// The longest prefix of `text` of at most `budget` bytes that ends at a character boundary.
fn char_prefix(text: &str, budget: usize) -> &str {
    let mut end = budget.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest prefix of `text` of at most `budget` bytes that ends where a word ends (the next
/// character is an ASCII space, tab, newline or carriage return, the last one is not); `None`
/// when the whole text fits in `budget` or no word ends within it. Only those four count:
/// every tokenizer splits words there, while other Unicode "whitespace" may not separate words
/// for it (BERT's normaliser deletes U+0085 and U+000B as control characters, joining the
/// words around them).
fn word_prefix(text: &str, budget: usize) -> Option<&str> {
    if text.len() <= budget {
        return None;
    }
    let mut end = None;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if i > budget {
            break;
        }
        if matches!(c, ' ' | '\t' | '\n' | '\r') {
            if in_word {
                end = Some(i);
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    end.map(|e| &text[..e])
}

/// Cuts texts into batches: indices sorted by token count, longest first (ties in input order),
/// then filled greedily while the batch has at most `max_batch` texts and `texts × longest` stays
/// within `max_tokens` (a text longer than the budget gets a batch of its own). With
/// `equal_lengths`, a batch also never mixes lengths (for graphs without an attention mask,
/// which cannot ignore padding).
///
/// Returns the batches as lists of indices into `lengths`. Deterministic.
pub fn plan_batches(
    lengths: &[usize],
    max_batch: usize,
    max_tokens: usize,
    equal_lengths: bool,
) -> Vec<Vec<usize>> {
    plan_batches_within(lengths, max_batch, equal_lengths, |rows, seq| {
        rows.saturating_mul(seq) <= max_tokens
    })
}

/// [`plan_batches`] with any bound on a batch: `fits(texts, padded_length)` says whether a batch
/// of that shape may run (a text that fits in no batch still gets one of its own).
pub fn plan_batches_within(
    lengths: &[usize],
    max_batch: usize,
    equal_lengths: bool,
    fits: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    let max_batch = max_batch.max(1);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0usize;
    for i in order {
        let len = lengths[i].max(1);
        let fits = !current.is_empty()
            && current.len() < max_batch
            && fits(current.len() + 1, longest)
            && (!equal_lengths || len == longest);
        if !fits && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            longest = len;
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Bytes one inference run of `rows` texts padded to `seq` tokens may take in ONNX Runtime's CPU
/// provider, for a BERT-style encoder of hidden width `hidden`, with a quarter on top.
///
/// Fitted to the peak resident memory of a backend running all-MiniLM-L6-v2 (int8, hidden 384,
/// 12 heads) at 32/128/512 texts × 64/128/256 tokens (within 12% of every measurement; a
/// 512 × 256 run took 12.2 GB): a fixed 64 MB, about 52 bytes per token and unit of width
/// (activations, the feed-forward layer's four-fold width), and 24 bytes per text, squared
/// length and attention head (scores and softmax of every head), with `hidden / 32` heads (12
/// for MiniLM; BERT-base's 12 heads of 64 are over-counted, on the safe side). Saturates.
pub fn batch_bytes(rows: usize, seq: usize, hidden: usize) -> u64 {
    let (rows, seq, hidden) = (rows as u64, seq as u64, hidden as u64);
    let tokens = rows.saturating_mul(seq);
    let activations = tokens.saturating_mul(hidden).saturating_mul(52);
    let heads = (hidden / 32).max(1);
    let attention = tokens
        .saturating_mul(seq)
        .saturating_mul(heads)
        .saturating_mul(24);
    let total = (64u64 << 20)
        .saturating_add(activations)
        .saturating_add(attention);
    total.saturating_add(total / 4)
}

/// One batch as the graph sees it: row-major `[rows, seq]` tensors, right-padded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaddedBatch {
    /// Number of texts.
    pub rows: usize,
    /// Padded length (the longest text of the batch).
    pub seq: usize,
    /// Token ids, `pad_id` after each text's end.
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids, 0 on padding.
    pub token_type_ids: Vec<i64>,
    /// Each row's real length.
    pub lengths: Vec<usize>,
}

impl PaddedBatch {
    /// Pads the given encodings to the longest of them.
    pub fn new(items: &[&Encoded], pad_id: u32) -> PaddedBatch {
        let rows = items.len();
        let seq = items.iter().map(|e| e.len()).max().unwrap_or(0);
        let n = rows * seq;
        let mut input_ids = vec![i64::from(pad_id); n];
        let mut attention_mask = vec![0i64; n];
        let mut token_type_ids = vec![0i64; n];
        let mut lengths = Vec::with_capacity(rows);
        for (r, e) in items.iter().enumerate() {
            let base = r * seq;
            let len = e.len();
            input_ids[base..base + len].copy_from_slice(&e.ids);
            attention_mask[base..base + len].fill(1);
            // Segment ids beyond the ids are ignored, missing ones are 0.
            for (dst, src) in token_type_ids[base..base + len].iter_mut().zip(&e.type_ids) {
                *dst = *src;
            }
            lengths.push(len);
        }
        PaddedBatch {
            rows,
            seq,
            input_ids,
            attention_mask,
            token_type_ids,
            lengths,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate is never below what all-MiniLM-L6-v2 took (peak resident memory of a
    /// backend over its resident memory before the run, this 2-vCPU VM, ONNX Runtime 1.23 CPU,
    /// `persona.batch_size` and `persona.max_batch_tokens` raised), nor far above it.
    #[test]
    fn batch_memory_estimate_covers_measured_runs() {
        // (texts, tokens each, peak delta in KiB)
        let measured = [
            (32, 64, 127_648u64),
            (128, 64, 351_936),
            (32, 256, 777_496),
            (128, 256, 2_805_012),
            (512, 128, 4_069_464),
            (512, 256, 12_234_140),
        ];
        for (rows, seq, kib) in measured {
            let took = kib * 1024;
            let estimate = batch_bytes(rows, seq, 384);
            let ratio = estimate as f64 / took as f64;
            assert!(
                (1.0..1.5).contains(&ratio),
                "{rows} x {seq}: ratio {ratio:.2}"
            );
        }
        assert_eq!(batch_bytes(usize::MAX, usize::MAX, 384), u64::MAX);
    }

    #[test]
    fn batches_sorted_bounded_and_complete() {
        let lengths = [5, 30, 2, 30, 7, 7, 1, 12];
        let batches = plan_batches(&lengths, 3, 64, false);
        // Every index once.
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            assert!(b.len() <= 3);
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() * longest <= 64 || b.len() == 1, "{b:?}");
            // Longest first within a batch.
            assert_eq!(lengths[b[0]], longest);
        }
        assert_eq!(batches[0], vec![1, 3]); // 3 × 30 would exceed 64 tokens
        assert_eq!(batches[1], vec![7, 4, 5]);
        assert_eq!(batches[2], vec![0, 2, 6]);
    }

    #[test]
    fn oversized_text_gets_own_batch_and_equal_lengths_split() {
        assert_eq!(
            plan_batches(&[100, 3, 3], 8, 10, false),
            vec![vec![0], vec![1, 2]]
        );
        assert_eq!(
            plan_batches(&[4, 3, 4, 3], 8, 1000, true),
            vec![vec![0, 2], vec![1, 3]]
        );
        assert!(plan_batches(&[], 8, 10, false).is_empty());
        // A zero batch size is treated as one.
        assert_eq!(plan_batches(&[1, 1], 0, 10, false).len(), 2);
    }

    #[test]
    fn padding_layout() {
        let a = Encoded {
            ids: vec![2, 7, 3],
            type_ids: vec![0, 0, 0],
        };
        let b = Encoded {
            ids: vec![2, 3],
            type_ids: vec![0, 0],
        };
        let batch = PaddedBatch::new(&[&a, &b], 9);
        assert_eq!((batch.rows, batch.seq), (2, 3));
        assert_eq!(batch.input_ids, vec![2, 7, 3, 2, 3, 9]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(batch.lengths, vec![3, 2]);
    }

    #[test]
    fn word_prefix_ends_at_a_word_end_within_the_budget() {
        assert_eq!(word_prefix("short", 10), None);
        assert_eq!(word_prefix("one two three four", 9), Some("one two"));
        assert_eq!(word_prefix("one  two   three", 12), Some("one  two"));
        assert_eq!(
            word_prefix("   leading spaces here", 12),
            Some("   leading")
        );
        assert_eq!(word_prefix("nowhitespaceatallhere", 5), None);
        assert_eq!(word_prefix("héllo wörld again", 8), Some("héllo"));
        // Unicode whitespace a tokenizer may delete (joining the words) is not a word end.
        assert_eq!(word_prefix("one\u{85}two three", 7), None);
        assert_eq!(word_prefix("one\u{a0}two three", 7), None);
    }

    const TOKENIZER: &[u8] = include_bytes!("../../tests/data/text/tokenizer.json");

    #[test]
    fn long_texts_tokenise_as_if_whole() {
        use rand::{Rng, SeedableRng};
        let enc = TextEncoder::from_bytes(TOKENIZER, 16).unwrap();
        let words = [
            "good", "bad", "film", "the", "movie", "great", "a", ",", ".", "!", "zz", "é",
        ];
        let spaces = [" ", "  ", "\n", "\t ", " . "];
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        for n in [0usize, 3, 10, 40, 60, 100, 300, 3000] {
            for _ in 0..20 {
                let mut t = String::new();
                if rng.random_bool(0.3) {
                    t.push_str("   ");
                }
                for _ in 0..n {
                    t.push_str(words[rng.random_range(0..words.len())]);
                    t.push_str(spaces[rng.random_range(0..spaces.len())]);
                }
                let whole = enc.finish(&enc.tokenize(&t).unwrap());
                assert_eq!(enc.encode(&t).unwrap(), whole, "{n} words: {t:?}");
            }
        }
    }

    #[test]
    fn a_huge_text_is_tokenised_from_a_prefix() {
        let enc = TextEncoder::from_bytes(TOKENIZER, 16).unwrap();
        let huge = "the good movie ".repeat(1_000_000); // 15 MB
        let start = std::time::Instant::now();
        let got = enc.encode(&huge).unwrap();
        // Whole, this takes seconds and hundreds of MB; from a prefix, microseconds.
        assert!(start.elapsed().as_secs_f64() < 0.5, "{:?}", start.elapsed());
        assert_eq!(got.ids.len(), 16);
        assert_eq!(got, enc.encode(&huge[..15 * 100]).unwrap());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Any text, built from words, every kind of Unicode whitespace and control character,
        /// combining marks, emoji and special-token look-alikes, tokenises from its prefix
        /// exactly as whole, never panics, and gives between 1 and max_length tokens.
        #[test]
        fn any_text_tokenises_as_if_whole(
            pieces in proptest::collection::vec(0usize..PIECES.len(), 0..1500),
            max_length in 3usize..24,
        ) {
            let enc = TextEncoder::from_bytes(TOKENIZER, max_length).unwrap();
            let text: String = pieces.iter().map(|&i| PIECES[i]).collect();
            let got = enc.encode(&text).unwrap();
            let whole = enc.finish(&enc.tokenize(&text).unwrap());
            proptest::prop_assert_eq!(&got, &whole);
            proptest::prop_assert!(!got.ids.is_empty() && got.ids.len() <= max_length);
        }
    }

    /// Pieces of the fuzzed texts.
    const PIECES: &[&str] = &[
        "good",
        "film",
        "the",
        "movie",
        "zz",
        "a",
        "b",
        "unbelievably",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\t",
        "\r",
        "\u{b}",
        "\u{c}",
        "\u{85}",
        "\u{a0}",
        "\u{1680}",
        "\u{2003}",
        "\u{2028}",
        "\u{2029}",
        "\u{202f}",
        "\u{3000}",
        "\u{200b}",
        "\u{feff}",
        "\u{0}",
        "\u{fffd}",
        "\u{301}",
        "é",
        "日本",
        "🎉",
        "👍🏽",
        ",",
        ".",
        "!",
        "'",
        "[CLS]",
        "[SEP]",
        "##",
        "[UNK]",
    ];

    /// Texts whose words are long (but shorter than the giant-word bound) still tokenise as if
    /// whole, and a text that is one 10 MB word (or begins with one) costs what its first
    /// GIANT_WORD_BYTES_PER_TOKEN × max_length bytes cost.
    #[test]
    fn a_giant_word_is_cut_and_long_words_are_not() {
        let enc = TextEncoder::from_bytes(TOKENIZER, 16).unwrap();
        let long_words = format!("{} good film ", "abcdefghij".repeat(300)).repeat(50);
        let whole = enc.finish(&enc.tokenize(&long_words).unwrap());
        assert_eq!(enc.encode(&long_words).unwrap(), whole);

        let cap = 16 * GIANT_WORD_BYTES_PER_TOKEN;
        for giant in [
            "é".repeat(5_000_000), // 10 MB, no whitespace, 2-byte chars
            format!("good {}", "x".repeat(10_000_000)), // a word, then a giant one
            format!("{} good film", ",a".repeat(5_000_000)), // punctuation but no whitespace
        ] {
            let start = std::time::Instant::now();
            let got = enc.encode(&giant).unwrap();
            assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
            assert!(!got.ids.is_empty() && got.ids.len() <= 16);
            assert_eq!(got, enc.encode(char_prefix(&giant, cap)).unwrap());
        }
        assert_eq!(char_prefix("héllo", 2), "h");
        assert_eq!(char_prefix("héllo", 3), "hé");
        assert_eq!(char_prefix("héllo", 99), "héllo");
    }
}
