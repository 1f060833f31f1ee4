//! Data: corpora (the synthetic Python generator, directories of files, jsonl) and the task registry.

pub mod corpus;
pub mod tasks;
