//! Errors of scans and scan indexes. Each names the file (or the node) and what is wrong, on one line.

use std::path::PathBuf;

use crate::circuit::NodeId;
use crate::model::ModelError;

/// Why a scan could not be run, written or read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading or writing a scan file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds no `index.json`.
    #[error("{dir}: no scan index here (no index.json); run `circuitscope scan --model MODEL_DIR` first")]
    Missing {
        /// The folder searched.
        dir: PathBuf,
    },
    /// The scan was written by a newer build.
    #[error("{path}: format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope or rescan")]
    NewerVersion {
        /// The `index.json`.
        path: PathBuf,
        /// The `format_version` in it.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A scan file is truncated, has a bad header or disagrees with `index.json`.
    #[error("{path}: corrupt scan index: {reason}; rescan with `circuitscope scan`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: CorruptScan,
    },
    /// The scan belongs to another model's weights.
    #[error("{path}: this scan was made for model {made_for}, not {given}; rescan with `circuitscope scan`")]
    ModelMismatch {
        /// The `index.json`.
        path: PathBuf,
        /// The fingerprint recorded in the scan.
        made_for: String,
        /// The fingerprint of the model given.
        given: String,
    },
    /// A node asked for is not among the scanned hooks or channels.
    #[error("node `{node}` is not in this scan: {problem}")]
    UnknownNode {
        /// The node id as given.
        node: String,
        /// Why it is not there.
        #[source]
        problem: UnknownScanNode,
    },
    /// The output folder exists and is not a scan, so it is not replaced.
    #[error("{dir}: exists and is not a scan index; refusing to replace it (choose another --out)")]
    NotAScanDir {
        /// The output folder.
        dir: PathBuf,
    },
    /// An `index.json` whose layout is impossible, so that reads within its sizes could go out of bounds.
    #[error("{path}: corrupt scan index: {reason}; rescan with `circuitscope scan`")]
    BadMeta {
        /// The `index.json`.
        path: PathBuf,
        /// What is wrong with the layout.
        reason: ScanMetaError,
    },
    /// A scan about to be written has an impossible layout (a bug in the caller, not in a file).
    #[error("scan: {0}")]
    InvalidMeta(#[source] ScanMetaError),
    /// The meta given to `ScanData::write` was not built from that scan.
    #[error("scan: the meta given to ScanData::write does not describe this scan (build it with ScanData::meta)")]
    MetaMismatch,
    /// Nothing to scan.
    #[error("scan: no tokens to scan")]
    NoTokens,
    /// More tokens than the index's u32 positions can address.
    #[error("scan: {0} tokens is more than a scan holds")]
    TooManyTokens(usize),
    /// A token id beyond the model's vocabulary.
    #[error("scan: token {id} at position {pos} is outside the model's vocabulary ({vocab} ids); was the stream made with another tokenizer?")]
    TokenOutOfVocab {
        /// The token id.
        id: u32,
        /// Its position in the stream.
        pos: usize,
        /// The model's `vocab_size`.
        vocab: usize,
    },
    /// A sequence length the model cannot run.
    #[error("scan: sequence length {seq_len} must be in 1..={block_size}")]
    SeqLen {
        /// The length asked for.
        seq_len: usize,
        /// The model's context.
        block_size: usize,
    },
    /// Histogram or exemplar settings out of range.
    #[error("scan: hist_bins must be positive and the window below 65536 (hist_bins {hist_bins}, window {window})")]
    BadLayout {
        /// Histogram bins asked for.
        hist_bins: usize,
        /// Exemplar window (tokens before + after + 1).
        window: usize,
    },
    /// The forward pass did not record a hook the scan needs.
    #[error("scan: the forward pass did not record hook `{hook}`")]
    NotRecorded {
        /// The hook name.
        hook: String,
    },
    /// A hook recorded another number of values than its shape implies.
    #[error("scan: hook `{hook}` recorded {got} values, expected {rows} × {width}")]
    RecordedSize {
        /// The hook name.
        hook: String,
        /// Values recorded.
        got: usize,
        /// Token positions in the batch.
        rows: usize,
        /// The hook's width.
        width: usize,
    },
    /// A node `scan --nodes` cannot scan.
    #[error("scan --nodes: `{node}`: {problem}")]
    ChosenNode {
        /// The node as given.
        node: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `scan --nodes` with an empty list.
    #[error("scan --nodes: no nodes given")]
    NoChosenNodes,
    /// Two SAEs on one hook: their features would have the same node ids.
    #[error("scan: two SAEs read `{hook}`; a scan holds one SAE per hook (its features are `{hook}.sae[i]`)")]
    DuplicateSaeHook {
        /// The hook both read.
        hook: String,
    },
    /// An SAE could not be run on the model's activations.
    #[error("scan: SAE on `{hook}`: {source}")]
    Sae {
        /// The hook the SAE reads.
        hook: String,
        /// What failed.
        #[source]
        source: Box<crate::analysis::sae::SaeError>,
    },
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Why an index's layout (`index.json`) is impossible.
#[derive(Debug, thiserror::Error)]
pub enum ScanMetaError {
    /// `format_version` 0, which no build writes.
    #[error("format_version 0")]
    ZeroVersion,
    /// No model fingerprint.
    #[error("empty fingerprint")]
    EmptyFingerprint,
    /// A hook's chosen channels are not as many as its width, or not strictly increasing.
    #[error("hook `{hook}` lists {listed} channels for width {width}, or lists them out of order")]
    HookChannels {
        /// The hook name.
        hook: String,
        /// How many channels it lists.
        listed: usize,
        /// Its width in the file.
        width: usize,
    },
    /// The hooks do not tile the node range in order.
    #[error("hook `{hook}` has offset {offset} (expected {expected}) and width {width}")]
    HookLayout {
        /// The hook name.
        hook: String,
        /// Its offset in the file.
        offset: usize,
        /// The offset its predecessors imply.
        expected: usize,
        /// Its width in the file.
        width: usize,
    },
    /// Offset plus width overflows.
    #[error("hook widths overflow")]
    HookWidthsOverflow,
    /// The hooks' widths do not add up to `nodes`.
    #[error("the hooks hold {hooks} nodes but `nodes` is {nodes}")]
    NodeCount {
        /// Nodes the hooks hold.
        hooks: usize,
        /// The `nodes` field.
        nodes: usize,
    },
    /// `tokens` is zero or beyond u32.
    #[error("tokens {0} out of range")]
    Tokens(u64),
    /// `hist_bins` is zero or above 65536.
    #[error("hist_bins {0} out of range")]
    HistBins(usize),
    /// The quantiles are not the ones this build samples.
    #[error("quantiles {found:?}, expected {expected:?}")]
    Quantiles {
        /// The quantiles in the file.
        found: Vec<f64>,
        /// This build's quantiles.
        expected: Vec<f64>,
    },
    /// The exemplar window or count per node is out of range.
    #[error("exemplar layout out of range")]
    ExemplarLayout,
    /// A file size computed from the layout overflows.
    #[error("sizes overflow")]
    SizesOverflow,
    /// An SAE entry that names no hook entry of its latent count.
    #[error("SAE entry `{hook}` ({n_latents} latents) matches no hook entry of that width")]
    SaeEntry {
        /// The hook entry it names.
        hook: String,
        /// Its latent count.
        n_latents: usize,
    },
}

/// Result of scan operations; the error defaults to [`ScanError`].
pub type Result<T, E = ScanError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ScanError {
    let path = path.into();
    move |source| ScanError::Io { path, source }
}

/// What is wrong with a corrupt scan file (the `reason` of [`ScanError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum CorruptScan {
    /// `index.json` does not parse as JSON.
    #[error("not JSON ({0})")]
    NotJson(serde_json::Error),
    /// `index.json` has no numeric `format_version`.
    #[error("no format_version")]
    NoVersion,
    /// `index.json` is JSON but not a scan index's; serde_json's message names the field, so it is kept as is.
    #[error("{0}")]
    Schema(serde_json::Error),
    /// A binary file's size differs from what `index.json` implies.
    #[error("{len} bytes where index.json implies {expected}{}", truncated_note(.len, .expected))]
    Size {
        /// The file's size in bytes.
        len: u64,
        /// The size `index.json` implies, in bytes.
        expected: u64,
    },
    /// A binary file does not start with its magic bytes.
    #[error("bad magic (expected {expected})")]
    BadMagic {
        /// The magic the file should start with, as text.
        expected: String,
    },
    /// A binary file's header disagrees with `index.json`.
    #[error("header field {field} is {got}, index.json says {want}")]
    HeaderField {
        /// The header field's position (0-based, after the magic).
        field: usize,
        /// The value in the file.
        got: u32,
        /// The value `index.json` implies.
        want: u32,
    },
    /// A node's histogram counts do not add up to the tokens scanned.
    #[error("the histogram of node {node} does not sum to the {tokens} tokens scanned")]
    HistogramSum {
        /// The node.
        node: NodeId,
        /// The tokens the scan covered.
        tokens: u64,
    },
    /// An exemplar's window or pivot lies outside the scanned tokens or the window size.
    #[error("an exemplar of node {node} has window {start}+{len}, pivot {pivot}")]
    ExemplarWindow {
        /// The node.
        node: NodeId,
        /// The window's first token in the scanned stream.
        start: usize,
        /// The window's length in tokens.
        len: usize,
        /// The pivot's position within the window.
        pivot: usize,
    },
}

fn truncated_note(len: &u64, expected: &u64) -> &'static str {
    if len < expected {
        " (truncated)"
    } else {
        ""
    }
}

/// Why a node is not in a scan (the `problem` of [`ScanError::UnknownNode`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownScanNode {
    /// A feature of an SAE the scan did not run.
    #[error("the scan ran no SAE on `{hook}` (rescan with `circuitscope scan --sae DIR`)")]
    NoSae {
        /// The hook the feature's SAE reads.
        hook: String,
    },
    /// The scan has no hook of that name (a layer the scanned model lacks).
    #[error("no hook `{hook}` (the scanned model has {layers} layers)")]
    NoHook {
        /// The node's hook.
        hook: String,
        /// The scanned model's layer count.
        layers: usize,
    },
    /// The node's channel is at or past the hook's width.
    #[error("index out of range (`{hook}` has {width} channels)")]
    IndexOutOfRange {
        /// The node's hook.
        hook: String,
        /// The hook's width in the scan.
        width: usize,
    },
    /// A scan of chosen nodes (`scan --nodes`) that did not choose this one.
    #[error("not in this scan, which covers {scanned} chosen channel(s) of `{hook}` (scan --nodes)")]
    NotChosen {
        /// The node's hook.
        hook: String,
        /// How many of the hook's channels the scan covers.
        scanned: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_mismatch_says_truncated_only_when_short() {
        let short = CorruptScan::Size { len: 10, expected: 20 }.to_string();
        assert_eq!(short, "10 bytes where index.json implies 20 (truncated)");
        let long = CorruptScan::Size { len: 30, expected: 20 }.to_string();
        assert_eq!(long, "30 bytes where index.json implies 20");
    }
}
