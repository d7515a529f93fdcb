//! Collaborative filtering: the data set, the algorithms, the stored model and its evaluation.

pub mod als;
pub mod baseline;
pub mod beyond;
pub mod coldstart;
pub mod data;
pub mod evaluate;
pub mod explain;
pub mod foldin;
pub mod knn;
pub mod metrics;
pub mod mf;
pub mod model;
pub mod neighbours;
pub mod split;
pub mod train;

pub use data::{parse_tab_ratings, BuildCounts, Csr, Dataset, DatasetBuilder, IdMap};
pub use explain::{Explainer, Explanation, Reason, ReasonKind};
pub use foldin::FoldedUser;
pub use model::CfModel;
pub use train::{
    estimate_bytes, estimate_held_rows_bytes, estimate_model_bytes, estimate_peak_bytes,
    estimate_read_bytes, seeded_options, train, Algorithm, ALGORITHMS,
};
