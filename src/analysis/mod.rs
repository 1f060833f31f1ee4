//! Analyses that run models or read their weights: task evaluation, scans, pruning, ablations, and the lenses
//! the workbench shows (recorded runs, attention patterns, embedding tables, fallback means, the sweep), and
//! automatic explanations of nodes (N2G).

pub mod ablate;
pub mod attention_pattern;
pub mod attribution;
pub mod bridge;
pub mod embedding_tables;
pub mod eval;
pub mod explain;
pub mod framework;
pub mod heads;
pub mod hook_means;
pub mod logit_attribution;
pub mod minimize;
pub mod next_token;
pub mod prune;
pub mod recording;
pub mod sae;
pub mod scan;
pub mod sweep;
