//! Data: corpora (the synthetic Python generator, directories of files, jsonl), the task registry, and the token
//! pool that training, scans, SAEs and evaluation draw windows from.

pub mod corpus;
pub mod tasks;
pub mod token_pool;

pub use token_pool::TokenPool;
