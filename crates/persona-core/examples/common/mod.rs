//! What the MovieLens 100K examples share: their command line `[DIR] [ALGO] [JSON-PARAMS] ...`
//! and the line they print when the data are missing. Included with `mod common;` (cargo builds
//! no example from a subdirectory's mod.rs).
use persona_core::cf::Algorithm;

/// The first three arguments of an example.
pub struct Args {
    /// DIR: the MovieLens 100K directory, default ../shared/data/ml-100k (MovieLens may not be
    /// redistributed: read it by path).
    pub dir: String,
    /// ALGO: the algorithm's name; the example's own default when absent.
    pub algo: Algorithm,
    /// JSON-PARAMS: the training parameters, default `{}`.
    pub params: String,
}

/// Reads DIR, ALGO and JSON-PARAMS from the command line; returns them and the arguments after them.
pub fn args(default_algo: Algorithm) -> (Args, impl Iterator<Item = String>) {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "../shared/data/ml-100k".into());
    let algo = args
        .next()
        .map(|s| s.parse().expect("algorithm"))
        .unwrap_or(default_algo);
    let params = args.next().unwrap_or_else(|| "{}".into());
    (Args { dir, algo, params }, args)
}

/// Says that the example did not run because `path` is missing.
pub fn skipped(path: &str) {
    eprintln!("SKIPPED: {path} not found (MovieLens 100K is read from ../shared/data)");
}
