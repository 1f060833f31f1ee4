//! Errors of the engine. Every variant names the file (and tensor) it is about, so that the CLI can print one
//! line that tells the user what is wrong and where.

use std::path::PathBuf;

use super::sparse_linear::CsrWeightError;
use super::torch_pickle::{TorchZipError, ZipProblem};

/// Everything that can go wrong while loading a checkpoint or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or mapping a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The config json is unreadable or describes an impossible model.
    #[error("{path}: invalid config: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: super::config::ConfigError,
    },
    /// A tensor the config requires is absent from the weights file.
    #[error("{path}: missing required tensor `{name}`")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the missing tensor.
        name: String,
    },
    /// A tensor's shape disagrees with what the config implies.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape stored in the file.
        got: Vec<usize>,
    },
    /// A tensor is present but unusable (dtype, non-finite values, broken CSR parts, contradictions).
    #[error("{path}: tensor `{name}`: {problem}")]
    BadTensor {
        /// The weights file.
        path: PathBuf,
        /// The state-dict name of the tensor.
        name: String,
        /// What is wrong with it (boxed: it keeps every engine `Result` small).
        #[source]
        problem: Box<TensorProblem>,
    },
    /// The file is not a checkpoint this build can read (bad header, zip or pickle).
    #[error("{path}: not a readable checkpoint: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: FormatProblem,
    },
    /// The directory holds no config plus weights file.
    #[error(
        "no model found in {path}: expected config.json or beeg_config.json beside model.safetensors or final_model.pt"
    )]
    NoModel {
        /// The directory searched.
        path: PathBuf,
    },
    /// A prompt is longer than the model's context.
    #[error("prompt has {len} tokens but the model's context (block_size) is {block_size}; shorten it or truncate")]
    TooLong {
        /// Tokens in the prompt.
        len: usize,
        /// The model's `block_size`.
        block_size: usize,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {id} at position {pos} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        /// The offending token id.
        id: u32,
        /// Its position in the prompt (0-based).
        pos: usize,
        /// The model's `vocab_size`.
        vocab: usize,
    },
    /// A hook name or intervention does not fit the model (unknown site, channel out of range).
    #[error("hook `{name}`: {problem}")]
    Hook {
        /// The hook name as given.
        name: String,
        /// What is wrong with it.
        #[source]
        problem: HookProblem,
    },
    /// A hook-selection pattern is not a valid regex.
    #[error("invalid hook regex `{pattern}`: {source}")]
    HookRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex parser's complaint.
        #[source]
        source: regex::Error,
    },
    /// A CSR kernel refused its input (invalid matrix or mismatched shapes).
    #[error(transparent)]
    Kernel(#[from] circuitscope_kernels::CsrError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What makes a stored tensor unusable (the `problem` of [`ModelError::BadTensor`]).
#[derive(Debug, thiserror::Error)]
pub enum TensorProblem {
    /// The tensor holds NaN or infinite values.
    #[error("{count} NaN or infinite {}", non_finite_tail(.overridable))]
    NonFinite {
        /// How many values are not finite.
        count: usize,
        /// Whether `--allow-nonfinite` would load it anyway (checkpoints: yes; SAE weights: no).
        overridable: bool,
    },
    /// A dense tensor that must hold floats does not.
    #[error("expected a float tensor, got {dtype:?}")]
    NotFloat {
        /// The tensor's dtype.
        dtype: candle_core::DType,
    },
    /// A safetensors tensor (or CSR values array) stored in a dtype this build does not read as floats.
    #[error("expected F32, BF16 or F16 values, got {dtype:?}")]
    ValuesDtype {
        /// The stored dtype.
        dtype: safetensors::Dtype,
    },
    /// The stored bytes do not make a tensor of the stated shape (boxed: candle's error is large).
    #[error(transparent)]
    Build(Box<candle_core::Error>),
    /// A CSR matrix has no `<name>.csr.shape` metadata.
    #[error("metadata key `{key}` is missing")]
    CsrShapeMissing {
        /// The metadata key.
        key: String,
    },
    /// A CSR matrix's shape metadata is not a json list of integers.
    #[error("metadata `{key}` = `{text}`: {source}")]
    CsrShapeJson {
        /// The metadata key.
        key: String,
        /// Its value as stored.
        text: String,
        /// The json parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A CSR matrix's shape metadata is not two numbers.
    #[error("metadata `{key}` must be [rows, cols], got {shape:?}")]
    CsrShapeRank {
        /// The metadata key.
        key: String,
        /// The shape it holds.
        shape: Vec<usize>,
    },
    /// A CSR matrix's column indices are not U32.
    #[error("col_idx must be U32, got {dtype:?}")]
    ColIdxDtype {
        /// The stored dtype.
        dtype: safetensors::Dtype,
    },
    /// A CSR matrix's row pointers are not U32 or U64.
    #[error("row_ptr must be U32 or U64, got {dtype:?}")]
    RowPtrDtype {
        /// The stored dtype.
        dtype: safetensors::Dtype,
    },
    /// A CSR matrix's parts do not form a valid matrix.
    #[error(transparent)]
    Csr(#[from] CsrWeightError),
    /// A torch storage could not be read for this tensor (boxed: it carries its own path and storage detail).
    #[error(transparent)]
    Storage(Box<TorchZipError>),
    /// An integer storage came back as floats (the reader contradicts the storage's kind).
    #[error("integer storage read back as floats")]
    IntReadAsFloat,
}

fn non_finite_tail(overridable: &bool) -> &'static str {
    if *overridable {
        "value(s); refusing to compute with them (--allow-nonfinite to load anyway)"
    } else {
        "values"
    }
}

/// What makes a file not a checkpoint this build reads (the `problem` of [`ModelError::Format`]).
#[derive(Debug, thiserror::Error)]
pub enum FormatProblem {
    /// The safetensors header does not parse.
    #[error("corrupt safetensors header: {0}")]
    SafetensorsHeader(#[source] safetensors::SafeTensorError),
    /// `format_version` in the metadata is not a number.
    #[error("format_version `{text}` is not a number")]
    VersionNotNumber {
        /// The value as stored.
        text: String,
    },
    /// The file was written by a newer build.
    #[error("format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope")]
    NewerVersion {
        /// The file's `format_version`.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A tensor is stored both dense and as CSR parts.
    #[error("`{name}` is stored both dense and as CSR (`{name}.csr.*`); which one is meant is ambiguous")]
    DenseAndCsr {
        /// The tensor's name.
        name: String,
    },
    /// A CSR part without its values array.
    #[error("`{part}` has no matching `{base}.csr.values`")]
    OrphanCsrPart {
        /// The part's full name.
        part: String,
        /// The tensor it belongs to.
        base: String,
    },
    /// The file is not a PyTorch zip state dict.
    #[error("not a PyTorch zip state dict: {0}")]
    TorchZip(#[source] Box<ZipProblem>),
    /// The pickle's top value is not a dict of tensors.
    #[error("the pickle holds a {found}, not a state dict of named tensors")]
    NotStateDict {
        /// The Python type found.
        found: &'static str,
    },
    /// The pickle's state dict holds no tensors.
    #[error("no tensors found in the pickle")]
    NoTensors,
    /// The file holds tensors a model of the config does not read.
    #[error("{}; --allow-extra loads anyway", unread_summary(.names))]
    UnreadTensors {
        /// The unread tensors' names, sorted.
        names: Vec<String>,
    },
    /// safetensors refused to serialise the tensors.
    #[error("cannot serialise: {0}")]
    Serialise(#[source] safetensors::SafeTensorError),
    /// A Hugging Face checkpoint holds a tensor under both its prefixed and unprefixed name.
    #[error("`{name}` is stored twice (with and without the `transformer.` prefix)")]
    StoredTwice {
        /// The tensor's name, prefixed.
        name: String,
    },
    /// A shard index is not json.
    #[error("invalid json: {0}")]
    IndexJson(#[source] serde_json::Error),
    /// A shard index has no `weight_map` object.
    #[error("no `weight_map` object")]
    NoWeightMap,
    /// A shard index's `weight_map` is empty.
    #[error("`weight_map` is empty")]
    EmptyWeightMap,
    /// A `weight_map` value is not a string.
    #[error("`weight_map` entry `{tensor}` is not a file name")]
    ShardNotString {
        /// The tensor's name.
        tensor: String,
    },
    /// A `weight_map` value names a file elsewhere than beside the index.
    #[error("`weight_map` entry `{tensor}` names `{file}`, which is not a file beside the index")]
    ShardOutsideIndex {
        /// The tensor's name.
        tensor: String,
        /// The file it names.
        file: String,
    },
    /// A shard could not be read.
    #[error("shard `{file}` (holding `{first}`): {source}")]
    Shard {
        /// The shard's file name.
        file: String,
        /// The first tensor the index puts in it.
        first: String,
        /// Why it could not be read (boxed: a [`ModelError`] inside a [`ModelError`]).
        #[source]
        source: Box<ModelError>,
    },
    /// A shard lacks a tensor the index puts in it.
    #[error("`weight_map` puts `{name}` in `{file}`, which does not hold it")]
    ShardLacks {
        /// The tensor's name.
        name: String,
        /// The shard's file name.
        file: String,
    },
    /// Two shards hold the same tensor.
    #[error("`{name}` is stored in more than one shard")]
    InManyShards {
        /// The tensor's name.
        name: String,
    },
    /// A hub cache's `refs/main` does not name a snapshot folder.
    #[error("`{rev}` is not a snapshot name")]
    BadSnapshotName {
        /// The revision as written in `refs/main`.
        rev: String,
    },
    /// A hub cache without `refs/main` holds no snapshot, or several.
    #[error(
        "{count} snapshots and no refs/main to choose between them; pass the snapshot folder itself{}",
        snapshot_hint(.count)
    )]
    AmbiguousSnapshots {
        /// The number of snapshot folders.
        count: usize,
    },
    /// Synthetic CSR parts (a test model) do not form a valid matrix.
    #[error(transparent)]
    Csr(CsrWeightError),
}

fn snapshot_hint(count: &usize) -> &'static str {
    if *count == 0 {
        ""
    } else {
        " (snapshots/<rev>)"
    }
}

/// The one-line summary of tensors a config does not read: the count, the first five names and a hint; it is
/// both the warning under `--allow-extra` and the start of [`FormatProblem::UnreadTensors`].
pub fn unread_summary(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > 5 {
        format!(" and {} more", names.len() - 5)
    } else {
        String::new()
    };
    format!(
        "{} tensor(s) the config does not use: {}{more} (check n_layer, sink, tied_unembed, enable_bigram_table)",
        names.len(),
        shown.join(", ")
    )
}

/// Why a hook name or an intervention does not fit the model or the activation (the `problem` of
/// [`ModelError::Hook`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HookProblem {
    /// The forward was given no tokens.
    #[error("empty token sequence")]
    EmptyInput,
    /// An intervention names a hook the model does not have.
    #[error("no such hook point in this model")]
    NoSuchHook,
    /// A per-channel vector is not as wide as the hook.
    #[error("{what} has {got} entries but the hook is {width} wide")]
    WidthMismatch {
        /// Which vector (`the means vector`, `the added vector`).
        what: &'static str,
        /// Its length.
        got: usize,
        /// The hook's width.
        width: usize,
    },
    /// A patch source is neither (B, T, W) nor (T, W).
    #[error("patch source has rank {rank}, expected (B, T, W) or (T, W)")]
    PatchRank {
        /// The source's rank.
        rank: usize,
    },
    /// A patch source's shape does not fit the activation.
    #[error("patch source has shape {got:?} but the activation is {activation:?}")]
    PatchShape {
        /// The source's shape (rank 3).
        got: Vec<usize>,
        /// The activation's shape.
        activation: Vec<usize>,
    },
    /// An intervention's channel is not below the hook's width.
    #[error("channel {channel} is out of range (width {width})")]
    ChannelOutOfRange {
        /// The channel given.
        channel: usize,
        /// The hook's width.
        width: usize,
    },
    /// An intervention's position is outside the sequence.
    #[error("position {position} is out of range ({tokens} tokens)")]
    PositionOutOfRange {
        /// The position given (negative counts from the end).
        position: i64,
        /// The sequence length.
        tokens: usize,
    },
    /// A block index past the model's last block.
    #[error("no block {layer} (the model has {blocks})")]
    NoSuchBlock {
        /// The block asked for.
        layer: usize,
        /// The model's block count.
        blocks: usize,
    },
    /// A token id to read out is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutsideVocab {
        /// The token id.
        id: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// A weight an edit needs is absent from the checkpoint.
    #[error("missing weight")]
    MissingWeight,
}

/// The engine's result type; the error defaults to [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small() {
        // Every `Result` of the engine carries this much; clippy's result_large_err bound is 128 bytes.
        assert!(
            std::mem::size_of::<ModelError>() <= 128,
            "{}",
            std::mem::size_of::<ModelError>()
        );
    }
}
