//! Analyses that run models: task evaluation now; scans, pruning and ablations build on it.

pub mod ablate;
pub mod eval;
pub mod prune;
pub mod scan;
