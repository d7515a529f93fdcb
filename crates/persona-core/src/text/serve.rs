//! Serving text graphs from one process to many: what the PostgreSQL layer needs to run every
//! connection's inference in one shared inference worker, without PostgreSQL itself.
//!
//! - [`Envelope`] / [`Reply`]: the messages a backend and the worker exchange (encoded with
//!   [`encode`] into a shared-memory segment and read back with [`decode`]).
//! - [`group`], [`merge`], [`split`]: dynamic batching. The batches of several callers waiting
//!   for the same graph are padded into one run and its output cut back into each caller's
//!   share. A row's output depends only on its own tokens (attention is masked), so a caller
//!   gets the values it would get alone, up to floating-point noise.
//! - [`GraphFiles`]: the content-addressed cache of graph files the worker loads sessions from.
//!   A file is named by the SHA-256 of its bytes, written under a temporary name, synced and
//!   renamed, and checked against its name before it is trusted, so a crash half-way through a
//!   write never leaves a file that is later used.
//! - [`Lru`]: the worker's bounded set of sessions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backend::{BatchOutput, GraphIo, OutputKind};
use super::batch::PaddedBatch;
use super::Task;
use crate::{CoreError, Result};

/// The SHA-256 of a graph's ONNX bytes: its identity in the cache and in the worker.
pub type GraphHash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> GraphHash {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of a hash (the cache file's name).
pub fn hex(hash: &GraphHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash from 64 hex digits (either case), or `None`.
pub fn parse_hex(s: &str) -> Option<GraphHash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A graph as the worker serves it: its bytes and the task it is read for (a classification
/// graph is read for its logits, an encoder for its token states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GraphKey {
    pub hash: GraphHash,
    pub task: Task,
}

/// What a backend asks of the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Load the graph (if needed) and say what it takes and gives.
    Describe,
    /// Run one padded batch.
    Run(PaddedBatch),
    /// Run a model's load-time probe batch (answered from the worker's memo of probes when
    /// another process sent the same one).
    Probe(PaddedBatch),
}

/// A request for one graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub graph: GraphKey,
    pub request: Request,
}

/// A [`CoreError`] as it crosses the process boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    CorruptModel(String),
    InvalidData(String),
    TooLarge(String),
    Runtime(String),
}

impl Failure {
    /// The failure of `e`.
    pub fn of(e: CoreError) -> Failure {
        match e {
            CoreError::CorruptModel(m) => Failure::CorruptModel(m),
            CoreError::TooLarge(m) => Failure::TooLarge(m),
            CoreError::InvalidData(m)
            | CoreError::TokenizerMismatch(m)
            | CoreError::SequenceTooLong(m) => Failure::InvalidData(m),
            other => Failure::Runtime(other.to_string()),
        }
    }

    /// The error it stands for.
    pub fn into_error(self) -> CoreError {
        match self {
            Failure::CorruptModel(m) => CoreError::CorruptModel(m),
            Failure::InvalidData(m) => CoreError::InvalidData(m),
            Failure::TooLarge(m) => CoreError::TooLarge(m),
            Failure::Runtime(m) => CoreError::Runtime(m),
        }
    }
}

/// The worker's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Describe`].
    Io(GraphIo),
    /// To [`Request::Run`] and [`Request::Probe`].
    Ran(BatchOutput),
    /// The cache holds no valid file for this graph (never written, removed, or found corrupt
    /// and removed): write it with [`GraphFiles::store`] and ask again.
    NotCached,
    /// The answer needs a segment of at least this many bytes: ask again with one.
    TooSmall { needed: u64 },
    /// Loading or running the graph failed.
    Failed(Failure),
}

/// Bytes of the length prefix [`encode`] writes.
const PREFIX: usize = 8;

/// Encodes `msg` into `buf` (length-prefixed). `Err(needed)` when `buf` is shorter than the
/// `needed` bytes the message takes.
pub fn encode<T: Serialize>(msg: &T, buf: &mut [u8]) -> std::result::Result<usize, u64> {
    // Serialised straight into the segment: a reply carries up to megabytes of token states.
    let body = buf
        .get_mut(PREFIX..)
        .and_then(|rest| postcard::to_slice(msg, rest).ok())
        .map(|written| written.len());
    let Some(len) = body else {
        return Err(encoded_len(msg) as u64);
    };
    buf[..PREFIX].copy_from_slice(&(len as u64).to_le_bytes());
    Ok(PREFIX + len)
}

/// Bytes [`encode`] needs for `msg`.
pub fn encoded_len<T: Serialize>(msg: &T) -> usize {
    PREFIX + postcard::experimental::serialized_size(msg).expect("sizing a message cannot fail")
}

/// Decodes a message written by [`encode`].
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<T> {
    let bad = |what: String| CoreError::Runtime(format!("malformed inference message: {what}"));
    let len = buf
        .get(..PREFIX)
        .map(|p| u64::from_le_bytes(p.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("no length".into()))?;
    let body = buf
        .get(PREFIX..PREFIX.saturating_add(len))
        .ok_or_else(|| bad(format!("{len} bytes announced, {} present", buf.len())))?;
    postcard::from_bytes(body).map_err(|e| bad(e.to_string()))
}

/// A waiting batch as [`group`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Texts.
    pub rows: usize,
    /// Padded length.
    pub seq: usize,
    /// Real tokens (the sum of the texts' lengths).
    pub tokens: usize,
}

impl Waiting {
    pub fn of(b: &PaddedBatch) -> Waiting {
        Waiting {
            rows: b.rows,
            seq: b.seq,
            tokens: b.lengths.iter().sum(),
        }
    }
}

/// Most padded tokens a merged run may compute per real token: merging saves a run's fixed
/// cost, but padding a short text to a long one's length costs more than that on a CPU (each
/// padded position goes through every layer).
pub const MAX_PADDING: f64 = 1.3;

/// Groups waiting batches into runs: by padded length (shortest first), consecutive batches
/// join a run while `fits(rows, longest)` holds for it (the worker's texts, tokens and memory
/// bounds) and it computes at most [`MAX_PADDING`] padded tokens per real token, or no more
/// than its batches would alone. A batch that does not fit on its own runs alone (its caller
/// planned it within its own bounds). Graphs without an attention mask cannot be padded: each
/// batch runs alone. Returns indices into `waiting`.
pub fn group(
    waiting: &[Waiting],
    fits: impl Fn(usize, usize) -> bool,
    can_pad: bool,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by_key(|&i| (waiting[i].seq, i));
    let mut runs: Vec<Vec<usize>> = Vec::new();
    // The current run's rows, longest, real tokens and padded tokens of its batches alone.
    let (mut rows, mut seq, mut tokens, mut alone) = (0usize, 0usize, 0usize, 0usize);
    for i in order {
        let w = waiting[i];
        let (new_rows, new_seq) = (rows + w.rows, seq.max(w.seq));
        let new_tokens = tokens + w.tokens;
        let new_alone = alone + w.rows * w.seq;
        let padded = new_rows.saturating_mul(new_seq);
        let cheap = padded as f64 <= MAX_PADDING * new_tokens as f64 || padded <= new_alone;
        match runs.last_mut() {
            Some(run) if can_pad && cheap && fits(new_rows, new_seq) => {
                run.push(i);
                (rows, seq, tokens, alone) = (new_rows, new_seq, new_tokens, new_alone);
            }
            _ => {
                runs.push(vec![i]);
                (rows, seq, tokens, alone) = (w.rows, w.seq, w.tokens, w.rows * w.seq);
            }
        }
    }
    runs
}

/// Pads `batches` into one (rows in order; padding ids 0 under a zero attention mask).
pub fn merge(batches: &[&PaddedBatch]) -> PaddedBatch {
    if let [only] = batches {
        return (*only).clone();
    }
    let rows: usize = batches.iter().map(|b| b.rows).sum();
    let seq = batches.iter().map(|b| b.seq).max().unwrap_or(0);
    let n = rows * seq;
    let mut out = PaddedBatch {
        rows,
        seq,
        input_ids: vec![0; n],
        attention_mask: vec![0; n],
        token_type_ids: vec![0; n],
        lengths: Vec::with_capacity(rows),
    };
    let mut r0 = 0;
    for b in batches {
        for r in 0..b.rows {
            let (src, dst) = (r * b.seq, (r0 + r) * seq);
            out.input_ids[dst..dst + b.seq].copy_from_slice(&b.input_ids[src..src + b.seq]);
            out.attention_mask[dst..dst + b.seq]
                .copy_from_slice(&b.attention_mask[src..src + b.seq]);
            out.token_type_ids[dst..dst + b.seq]
                .copy_from_slice(&b.token_type_ids[src..src + b.seq]);
        }
        out.lengths.extend_from_slice(&b.lengths);
        r0 += b.rows;
    }
    out
}

/// Cuts the output of a [`merge`]d run back into one output per batch, each shaped as if its
/// batch had run alone (token states cut to its own padded length).
pub fn split(out: &BatchOutput, batches: &[&PaddedBatch]) -> Result<Vec<BatchOutput>> {
    let rows: usize = batches.iter().map(|b| b.rows).sum();
    if out.rows != rows || out.data.len() != out.rows * out.seq * out.width {
        return Err(CoreError::Runtime(format!(
            "a merged run returned {} × {} × {} values for {rows} rows",
            out.rows, out.seq, out.width
        )));
    }
    let mut parts = Vec::with_capacity(batches.len());
    let mut r0 = 0;
    for b in batches {
        let seq = match out.kind {
            OutputKind::Hidden => b.seq,
            OutputKind::Logits => 1,
        };
        if seq > out.seq {
            return Err(CoreError::Runtime(format!(
                "a merged run returned {} positions for a batch of {seq}",
                out.seq
            )));
        }
        let mut data = Vec::with_capacity(b.rows * seq * out.width);
        for r in 0..b.rows {
            let base = (r0 + r) * out.seq * out.width;
            data.extend_from_slice(&out.data[base..base + seq * out.width]);
        }
        parts.push(BatchOutput {
            kind: out.kind,
            rows: b.rows,
            seq,
            width: out.width,
            data,
        });
        r0 += b.rows;
    }
    Ok(parts)
}

/// Cuts the runs of a round into pieces for `runners` sessions working at once: every run
/// whole when there are at least as many runs as runners, else the runs with the most rows
/// halved until every runner has a piece (a single-threaded session runs a half batch about as
/// efficiently per text as a whole one, while two threads of one session synchronise at every
/// operator). Returns `(run, rows)` pieces, each run's pieces in row order.
pub fn plan_pieces(run_rows: &[usize], runners: usize) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut pieces: Vec<(usize, std::ops::Range<usize>)> = run_rows
        .iter()
        .enumerate()
        .map(|(i, &r)| (i, 0..r))
        .collect();
    while pieces.len() < runners {
        let Some((at, _)) = pieces
            .iter()
            .enumerate()
            .filter(|(_, (_, r))| r.len() > 1)
            .max_by_key(|(_, (_, r))| r.len())
        else {
            break;
        };
        let (run, range) = pieces[at].clone();
        let mid = range.start + range.len() / 2;
        pieces[at] = (run, range.start..mid);
        pieces.insert(at + 1, (run, mid..range.end));
    }
    pieces
}

/// Rows `rows` of a batch (same padded length).
pub fn slice_rows(b: &PaddedBatch, rows: std::ops::Range<usize>) -> PaddedBatch {
    let cells = rows.start * b.seq..rows.end * b.seq;
    PaddedBatch {
        rows: rows.len(),
        seq: b.seq,
        input_ids: b.input_ids[cells.clone()].to_vec(),
        attention_mask: b.attention_mask[cells.clone()].to_vec(),
        token_type_ids: b.token_type_ids[cells].to_vec(),
        lengths: b.lengths[rows].to_vec(),
    }
}

/// Joins the outputs of consecutive row slices of one batch.
pub fn concat(mut outs: Vec<BatchOutput>) -> Result<BatchOutput> {
    let mut first = match outs.len() {
        0 => return Err(CoreError::Runtime("no output to join".into())),
        1 => return Ok(outs.pop().expect("one")),
        _ => outs.remove(0),
    };
    for o in outs {
        if o.kind != first.kind || o.seq != first.seq || o.width != first.width {
            return Err(CoreError::Runtime(format!(
                "pieces of one run returned different shapes ({} × {} and {} × {})",
                first.seq, first.width, o.seq, o.width
            )));
        }
        first.rows += o.rows;
        first.data.extend_from_slice(&o.data);
    }
    Ok(first)
}

/// Runs `pieces`, piece `i` on `sessions[i % sessions.len()]`, each session on a thread of its
/// own (these threads run the graph only; they never call back into the caller). Results in
/// the order of `pieces`.
pub fn run_pieces<B: super::Backend + ?Sized>(
    sessions: &[&B],
    pieces: &[PaddedBatch],
) -> Vec<Result<BatchOutput>> {
    let n = sessions.len().max(1).min(pieces.len().max(1));
    if n <= 1 || pieces.len() <= 1 {
        return pieces.iter().map(|p| sessions[0].run(p)).collect();
    }
    let mut results: Vec<Option<Result<BatchOutput>>> = (0..pieces.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|t| {
                let session = sessions[t];
                scope.spawn(move || {
                    (t..pieces.len())
                        .step_by(n)
                        .map(|i| (i, session.run(&pieces[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, r) in done {
                    results[i] = Some(r);
                }
            }
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(CoreError::Runtime("an inference thread panicked".into())))
        })
        .collect()
}

/// The directory of graph files, each named `<sha256 hex>.onnx`.
#[derive(Debug, Clone)]
pub struct GraphFiles {
    dir: PathBuf,
}

/// One file of the cache, as listed by [`GraphFiles::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub hash: GraphHash,
    pub bytes: u64,
    /// Seconds since the Unix epoch of its last write.
    pub modified: u64,
}

const SUFFIX: &str = ".onnx";
const TEMP_SUFFIX: &str = ".tmp";

fn io_error<'a>(what: &str, path: &'a Path) -> impl Fn(std::io::Error) -> CoreError + 'a {
    let what = what.to_string();
    move |e| CoreError::Runtime(format!("cannot {what} {}: {e}", path.display()))
}

impl GraphFiles {
    pub fn new(dir: impl Into<PathBuf>) -> GraphFiles {
        GraphFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the graph with this hash lives.
    pub fn path(&self, hash: &GraphHash) -> PathBuf {
        self.dir.join(format!("{}{SUFFIX}", hex(hash)))
    }

    /// Whether a file for `hash` exists (it is checked when loaded).
    pub fn contains(&self, hash: &GraphHash) -> bool {
        self.path(hash).is_file()
    }

    /// Writes `bytes` as the file of `hash` (checked to be their SHA-256): to a temporary
    /// name, synced, renamed over, and the directory synced. A reader sees the whole file or
    /// none; a crash leaves at most a temporary file, which [`GraphFiles::sweep`] removes.
    pub fn store(&self, hash: &GraphHash, bytes: &[u8]) -> Result<PathBuf> {
        self.store_with(hash, bytes, |f, b| f.write_all(b))
    }

    /// [`GraphFiles::store`] with the writing step given (tests interrupt it).
    pub fn store_with(
        &self,
        hash: &GraphHash,
        bytes: &[u8],
        write: impl FnOnce(&mut fs::File, &[u8]) -> std::io::Result<()>,
    ) -> Result<PathBuf> {
        if &sha256(bytes) != hash {
            return Err(CoreError::CorruptModel(format!(
                "the graph's bytes do not have the SHA-256 {} they are stored under",
                hex(hash)
            )));
        }
        create_private_dir(&self.dir)?;
        let path = self.path(hash);
        let temp = self
            .dir
            .join(format!("{}.{}{TEMP_SUFFIX}", hex(hash), std::process::id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)
                .map_err(io_error("create", &temp))?;
            write(&mut f, bytes).map_err(io_error("write", &temp))?;
            f.sync_all().map_err(io_error("sync", &temp))?;
            drop(f);
            fs::rename(&temp, &path).map_err(io_error("rename into place", &path))?;
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("sync", &self.dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| path)
    }

    /// The bytes of the graph `hash`, if its file exists and its contents have that hash. A
    /// file whose contents do not match is removed (and `None` returned), so the caller writes
    /// it again.
    pub fn load(&self, hash: &GraphHash) -> Result<Option<Vec<u8>>> {
        let path = self.path(hash);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        if &sha256(&bytes) != hash {
            fs::remove_file(&path).map_err(io_error("remove the corrupt file", &path))?;
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Removes the file of `hash` (no error if it is absent).
    pub fn remove(&self, hash: &GraphHash) -> Result<()> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes temporary files left by interrupted writes; returns how many.
    pub fn sweep(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in self.entries()? {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path()).map_err(io_error("remove", &entry.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The graph files (temporary files and others are left out), by name.
    pub fn list(&self) -> Result<Vec<CachedFile>> {
        let mut files = Vec::new();
        for entry in self.entries()? {
            let name = entry.file_name();
            let Some(hash) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(parse_hex)
            else {
                continue;
            };
            let meta = entry.metadata().map_err(io_error("stat", &entry.path()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            files.push(CachedFile {
                hash,
                bytes: meta.len(),
                modified,
            });
        }
        files.sort_by_key(|f| f.hash);
        Ok(files)
    }

    fn entries(&self) -> Result<Vec<fs::DirEntry>> {
        match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(io_error("list", &self.dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_error("list", &self.dir)(e)),
        }
    }
}

/// Creates `dir` (and its parents) readable by the owner only.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create the directory", dir))
}

/// A bounded map that evicts its least recently used entry.
#[derive(Debug)]
pub struct Lru<K, V> {
    entries: Vec<(K, V, u64)>,
    clock: u64,
}

impl<K: PartialEq, V> Default for Lru<K, V> {
    fn default() -> Self {
        Lru {
            entries: Vec::new(),
            clock: 0,
        }
    }
}

impl<K: PartialEq, V> Lru<K, V> {
    /// The value of `key`, marked as just used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        e.2 = clock;
        Some(&e.1)
    }

    /// [`Lru::get`], mutable.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.iter_mut().find(|(k, _, _)| k == key)?;
        e.2 = clock;
        Some(&mut e.1)
    }

    /// Inserts `value` under `key` (replacing any), then evicts least recently used entries
    /// (never the new one) until at most `capacity` remain; returns those evicted.
    pub fn insert(&mut self, key: K, value: V, capacity: usize) -> Vec<(K, V)> {
        self.clock += 1;
        self.entries.retain(|(k, _, _)| *k != key);
        self.entries.push((key, value, self.clock));
        let mut evicted = Vec::new();
        while self.entries.len() > capacity.max(1) {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.2)
                .map(|(i, _)| i)
                .expect("not empty");
            let (k, v, _) = self.entries.remove(oldest);
            evicted.push((k, v));
        }
        evicted
    }

    /// Entries, least recently used first, with their last-use ticks.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, u64)> {
        let mut v: Vec<_> = self.entries.iter().map(|(k, v, t)| (k, v, *t)).collect();
        v.sort_by_key(|e| e.2);
        v.into_iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|(k, v, _)| keep(k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lengths: &[usize], seq: usize, base: i64) -> PaddedBatch {
        let rows = lengths.len();
        let mut b = PaddedBatch {
            rows,
            seq,
            input_ids: vec![0; rows * seq],
            attention_mask: vec![0; rows * seq],
            token_type_ids: vec![0; rows * seq],
            lengths: lengths.to_vec(),
        };
        for (r, &len) in lengths.iter().enumerate() {
            for t in 0..len {
                b.input_ids[r * seq + t] = base + (r * 100 + t) as i64;
                b.attention_mask[r * seq + t] = 1;
                b.token_type_ids[r * seq + t] = (t % 2) as i64;
            }
        }
        b
    }

    /// A fake graph: each position's state is (id, mask, type) — so a merged run's answer can
    /// be checked against each batch run alone.
    fn run_fake(b: &PaddedBatch, kind: OutputKind) -> BatchOutput {
        let width = 3;
        let mut data = Vec::new();
        for r in 0..b.rows {
            match kind {
                OutputKind::Hidden => {
                    for t in 0..b.seq {
                        let i = r * b.seq + t;
                        data.extend([
                            b.input_ids[i] as f32 * b.attention_mask[i] as f32,
                            b.attention_mask[i] as f32,
                            b.token_type_ids[i] as f32,
                        ]);
                    }
                }
                OutputKind::Logits => {
                    let s: i64 = (0..b.seq)
                        .map(|t| b.input_ids[r * b.seq + t] * b.attention_mask[r * b.seq + t])
                        .sum();
                    data.extend([s as f32, b.lengths[r] as f32, 0.0]);
                }
            }
        }
        BatchOutput {
            kind,
            rows: b.rows,
            seq: if kind == OutputKind::Hidden { b.seq } else { 1 },
            width,
            data,
        }
    }

    #[test]
    fn merged_run_splits_into_each_batch_alone() {
        let a = batch(&[3, 1], 3, 0);
        let b = batch(&[5], 5, 1000);
        let c = batch(&[2, 2, 1], 2, 2000);
        let parts = [&a, &b, &c];
        let merged = merge(&parts);
        assert_eq!((merged.rows, merged.seq), (6, 5));
        assert_eq!(merged.lengths, vec![3, 1, 5, 2, 2, 1]);
        for kind in [OutputKind::Hidden, OutputKind::Logits] {
            let split = split(&run_fake(&merged, kind), &parts).unwrap();
            for (got, alone) in split.iter().zip(parts) {
                assert_eq!(got, &run_fake(alone, kind), "{kind:?}");
            }
        }
        // Shape mismatches are errors, not panics.
        let mut short = run_fake(&merged, OutputKind::Hidden);
        short.rows = 5;
        assert!(split(&short, &parts).is_err());
    }

    #[test]
    fn groups_respect_bounds_and_padding() {
        // Single texts (rows 1, tokens = seq) and one full batch.
        let one = |seq| Waiting {
            rows: 1,
            seq,
            tokens: seq,
        };
        let within = |max_rows: usize, max_tokens: usize| {
            move |rows: usize, seq: usize| rows <= max_rows && rows * seq <= max_tokens
        };
        // Similar lengths merge, shortest first; 40 tokens is too long to pad 10s to.
        let waiting = [one(12), one(10), one(40), one(11), one(38)];
        assert_eq!(
            group(&waiting, within(32, 10_000), true),
            vec![vec![1, 3, 0], vec![4, 2]]
        );
        // Bounds: rows and tokens.
        assert_eq!(
            group(&waiting, within(2, 10_000), true),
            vec![vec![1, 3], vec![0], vec![4, 2]]
        );
        // A batch over the bounds alone still runs.
        let big = Waiting {
            rows: 64,
            seq: 64,
            tokens: 3000,
        };
        assert_eq!(group(&[big], within(32, 100), true), vec![vec![0]]);
        // A caller's batch that is already padded merges with one no longer than it.
        let padded = Waiting {
            rows: 4,
            seq: 20,
            tokens: 40,
        };
        assert_eq!(
            group(&[padded, one(20)], within(32, 10_000), true),
            vec![vec![0, 1]]
        );
        assert_eq!(
            group(&waiting, within(32, 10_000), false).len(),
            waiting.len()
        );
        assert!(group(&[], within(1, 1), true).is_empty());
    }

    #[test]
    fn pieces_fill_the_runners_and_join_back() {
        assert_eq!(plan_pieces(&[32], 2), vec![(0, 0..16), (0, 16..32)]);
        assert_eq!(plan_pieces(&[3, 8], 2), vec![(0, 0..3), (1, 0..8)]);
        assert_eq!(
            plan_pieces(&[3, 8], 4),
            vec![(0, 0..3), (1, 0..4), (1, 4..6), (1, 6..8)]
        );
        assert_eq!(plan_pieces(&[1], 4), vec![(0, 0..1)]);
        assert!(plan_pieces(&[], 2).is_empty());

        struct Fake;
        impl super::super::Backend for Fake {
            fn io(&self) -> &GraphIo {
                unreachable!("not asked")
            }
            fn run(&self, b: &PaddedBatch) -> Result<BatchOutput> {
                Ok(run_fake(b, OutputKind::Hidden))
            }
        }
        let whole = batch(&[3, 1, 2, 3, 2], 3, 5);
        let pieces: Vec<PaddedBatch> = plan_pieces(&[whole.rows], 2)
            .into_iter()
            .map(|(_, r)| slice_rows(&whole, r))
            .collect();
        assert_eq!(
            pieces.iter().map(|p| p.rows).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let outs: Vec<BatchOutput> = run_pieces(&[&Fake, &Fake], &pieces)
            .into_iter()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(concat(outs).unwrap(), run_fake(&whole, OutputKind::Hidden));
        assert!(concat(Vec::new()).is_err());
    }

    #[test]
    fn messages_round_trip_and_report_the_size_they_need() {
        let msg = Envelope {
            graph: GraphKey {
                hash: sha256(b"g"),
                task: Task::Classification,
            },
            request: Request::Run(batch(&[3, 2], 3, 7)),
        };
        let mut small = [0u8; 16];
        let needed = encode(&msg, &mut small).unwrap_err();
        assert_eq!(needed as usize, encoded_len(&msg));
        let mut buf = vec![0u8; needed as usize];
        encode(&msg, &mut buf).unwrap();
        assert_eq!(decode::<Envelope>(&buf).unwrap(), msg);
        // Truncated or garbage segments are errors.
        assert!(decode::<Envelope>(&buf[..needed as usize - 1]).is_err());
        assert!(decode::<Reply>(&[255u8; 8]).is_err());
        let failure = Reply::Failed(Failure::of(CoreError::TooLarge("big".into())));
        let mut buf = vec![0u8; encoded_len(&failure)];
        encode(&failure, &mut buf).unwrap();
        let Reply::Failed(f) = decode::<Reply>(&buf).unwrap() else {
            panic!("not a failure")
        };
        assert!(matches!(f.into_error(), CoreError::TooLarge(m) if m == "big"));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("persona-graphs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn files_are_written_whole_and_checked_before_use() {
        let dir = temp_dir("store");
        let files = GraphFiles::new(&dir);
        let bytes = b"an onnx graph".to_vec();
        let hash = sha256(&bytes);
        assert_eq!(files.load(&hash).unwrap(), None);
        // Bytes under the wrong name are refused.
        assert!(files.store(&sha256(b"other"), &bytes).is_err());
        // A write that fails half-way leaves neither the file nor its temporary.
        let err = files
            .store_with(&hash, &bytes, |f, b| {
                f.write_all(&b[..4])?;
                Err(std::io::Error::other("disk full"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(!files.contains(&hash));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        files.store(&hash, &bytes).unwrap();
        assert_eq!(files.load(&hash).unwrap().as_deref(), Some(&bytes[..]));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A file whose contents are not its name's (truncated by a crash of a non-atomic
        // copy, edited) is removed, not used.
        fs::write(files.path(&hash), &bytes[..5]).unwrap();
        assert_eq!(files.load(&hash).unwrap(), None);
        assert!(!files.contains(&hash));
        // Leftover temporary files are swept; listing shows graph files only.
        files.store(&hash, &bytes).unwrap();
        fs::write(dir.join(format!("{}.123.tmp", hex(&hash))), b"half").unwrap();
        fs::write(dir.join("README"), b"not a graph").unwrap();
        assert_eq!(files.sweep().unwrap(), 1);
        let listed = files.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].hash, hash);
        assert_eq!(listed[0].bytes, bytes.len() as u64);
        files.remove(&hash).unwrap();
        files.remove(&hash).unwrap();
        assert!(files.list().unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_round_trips() {
        let h = sha256(b"abc");
        assert_eq!(
            hex(&h),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex(&hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut lru = Lru::default();
        assert!(lru.insert("a", 1, 2).is_empty());
        assert!(lru.insert("b", 2, 2).is_empty());
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.insert("c", 3, 2), vec![("b", 2)]);
        assert_eq!(lru.get(&"b"), None);
        // Replacing a key keeps one entry; capacity 0 still keeps the newest.
        assert!(lru.insert("c", 4, 2).is_empty());
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.insert("d", 5, 0).len(), 2);
        assert_eq!(lru.iter().map(|e| *e.0).collect::<Vec<_>>(), vec!["d"]);
    }
}
