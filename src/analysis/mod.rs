//! Analyses that run models: task evaluation now; scans, pruning and ablations build on it.

pub mod eval;
pub mod scan;
