//! The engine: configuration, checkpoint loading, sparse/dense linear layers, the forward pass, hooks and
//! interventions.

pub mod attention_op;
mod block;
pub mod checkpoint;
pub mod config;
pub mod dense_view;
pub mod error;
pub mod gpt;
pub mod hf_gpt2;
pub mod hook_name;
pub mod hooks;
mod inference;
pub mod layout;
pub mod linear;
pub mod norm;
mod pattern;
pub mod readout;
pub mod sparse_linear;
pub mod synth;
pub mod topk;
pub mod torch_pickle;
pub mod weight_names;

pub use checkpoint::{Checkpoint, Stored};
pub use config::{Config, ConfigError, Loctype};
pub use error::{ModelError, Result};
pub use gpt::{hook_points, Gpt, LoadOptions, ModelFiles, ModelFormat};
pub use hook_name::{HookName, HookSite};
pub use hooks::{Action, Hooks, Intervention};
