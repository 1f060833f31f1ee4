//! Sparse autoencoders (issue 16): a dictionary of latents (features) read from one hook's activations.
//!
//! An SAE encodes an activation x (d_in) into a sparse code z = TopK(W_encᵀ(x − b_pre) + b_enc) (ReLU after the
//! TopK; a plain ReLU for the `relu` architecture) and decodes x̂ = W_decᵀz + b_pre. [`Sae`] holds the weights and
//! does the arithmetic; [`SaeConfig`] says where it reads (a [`crate::model::HookName`]) and how it was made;
//! [`train`] fits one with Gao et al. 2024's recipe on activations streamed from a model ([`source`]); [`eval`]
//! measures it, splicing x̂ into the forward through the model's hook interventions.
//!
//! Two formats are read: ours (`sae.json` + `sae.safetensors`) and SAELens's (`cfg.json` +
//! `sae_weights.safetensors`, architectures `topk` and `standard`); ours is written.

mod autoencoder;
mod config;
pub mod eval;
pub mod source;
pub mod train;

pub use autoencoder::{
    topk_mask, LatentEdit, Sae, SAELENS_CONFIG_FILE, SAELENS_WEIGHTS_FILE, SAE_CONFIG_FILE, SAE_WEIGHTS_FILE,
};
pub use config::{Architecture, SaeConfig, TrainingStats, SAE_FORMAT_VERSION};

use std::path::PathBuf;

/// What can go wrong reading, writing or running an SAE.
#[derive(Debug, thiserror::Error)]
pub enum SaeError {
    /// Reading a file or a folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The folder holds neither our files nor SAELens's.
    #[error("{}: not an SAE folder (expected sae.json + sae.safetensors, or SAELens's cfg.json + sae_weights.safetensors)", path.display())]
    NotAnSae {
        /// The folder.
        path: PathBuf,
    },
    /// A config file is not the json expected, or describes an impossible SAE.
    #[error("{}: {problem}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        problem: SaeConfigProblem,
    },
    /// Reading a weights file (a missing tensor, a wrong shape, non-finite values) or running the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The SAE does not fit the model or the data it is given.
    #[error(transparent)]
    Mismatch(#[from] SaeMismatch),
    /// Writing the SAE or a run file failed.
    #[error(transparent)]
    Write(#[from] crate::fsio::FsioError),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::data::corpus::CorpusError),
    /// Tokenizing the corpus failed.
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    /// A training run's files disagree with the options given.
    #[error("{}: {problem}", path.display())]
    Run {
        /// The run's folder or file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        problem: RunProblem,
    },
}

/// Why an SAE config (ours or SAELens's) describes no SAE this build runs.
#[derive(Debug, thiserror::Error)]
pub enum SaeConfigProblem {
    /// The text is not json, or a field holds a value of the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// `sae.json` was written by a newer build.
    #[error("format_version {found} is newer than this circuitscope reads ({supported}); upgrade circuitscope")]
    NewerVersion {
        /// The file's `format_version`.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A zero input width or latent count.
    #[error("d_in ({d_in}) and n_latents ({n_latents}) must be positive")]
    ZeroSize {
        /// The input width.
        d_in: usize,
        /// The latent count.
        n_latents: usize,
    },
    /// A topk SAE without `k`.
    #[error("a topk SAE needs `k`")]
    TopKWithoutK,
    /// A `k` of 0 or above the latent count.
    #[error("k = {k} must be in 1..={n_latents} (n_latents)")]
    KOutOfRange {
        /// The `k` given.
        k: usize,
        /// The latent count.
        n_latents: usize,
    },
    /// A `k` on a relu SAE.
    #[error("`k` is for topk SAEs; this one is relu")]
    KOnRelu,
    /// A SAELens size field is absent or not a positive integer.
    #[error("`{key}` is missing or not a positive integer")]
    MissingSize {
        /// The field (`d_in`, `d_sae`, `k`).
        key: &'static str,
    },
    /// A SAELens architecture this build does not run.
    #[error("architecture `{found}` is not supported (topk, standard)")]
    Architecture {
        /// The architecture given.
        found: String,
    },
    /// SAELens activation normalisation other than `none`.
    #[error("normalize_activations `{found}` is not supported (only `none`)")]
    Normalization {
        /// The normalisation given.
        found: String,
    },
    /// SAELens's decoder-norm rescaling of activations.
    #[error("rescale_acts_by_decoder_norm is not supported")]
    RescaleByDecoderNorm,
    /// A SAELens config without the hook it reads.
    #[error("`metadata.hook_name` is missing")]
    MissingHookName,
    /// A SAELens hook name that is no hook of the model.
    #[error(transparent)]
    Hook(#[from] crate::model::hook_name::HookNameError),
}

/// Why training options describe no run (the [`SaeMismatch::Train`] cause).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainConfigProblem {
    /// A zero width, latent count or batch.
    #[error("d_in, the number of latents and the batch must be positive")]
    ZeroSize,
    /// A `k` of 0 or above the latent count.
    #[error("k = {k} must be in 1..={n_latents} (the number of latents)")]
    KOutOfRange {
        /// The `k` given.
        k: usize,
        /// The latent count.
        n_latents: usize,
    },
    /// A learning rate that is not a positive finite number.
    #[error("the learning rate {lr} must be positive")]
    LearningRate {
        /// The rate given.
        lr: f64,
    },
}

/// How an SAE does not fit its own weights, the model, or the data it is given.
#[derive(Debug, thiserror::Error)]
pub enum SaeMismatch {
    /// The SAE's config is impossible.
    #[error(transparent)]
    Config(SaeConfigProblem),
    /// A weight's shape disagrees with the config.
    #[error("{name} has shape {got:?}, expected {expected:?}")]
    WeightShape {
        /// `W_enc`, `b_enc`, `W_dec` or `b_pre`.
        name: &'static str,
        /// The weight's shape.
        got: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// The SAE reads a layer the model does not have.
    #[error("the SAE reads {hook}, but the model has {n_layer} layers")]
    NoLayer {
        /// The SAE's hook.
        hook: crate::model::HookName,
        /// The model's layer count.
        n_layer: usize,
    },
    /// The SAE reads a hook without channels (an attention pattern).
    #[error("the SAE reads {hook}, which has no channels to encode")]
    NoChannels {
        /// The SAE's hook.
        hook: crate::model::HookName,
    },
    /// The SAE's input width is not the hook's width in this model.
    #[error("the SAE reads {hook} with d_in {d_in}, but the model's {hook} is {width} wide")]
    Width {
        /// The SAE's hook.
        hook: crate::model::HookName,
        /// The SAE's input width.
        d_in: usize,
        /// The hook's width in the model.
        width: usize,
    },
    /// The SAE was trained on another model's weights.
    #[error("the SAE was trained on the model with fingerprint {want}; this model's is {got}")]
    Fingerprint {
        /// The fingerprint recorded in the SAE.
        want: String,
        /// The given model's fingerprint.
        got: String,
    },
    /// An input to encode whose last dimension is not `d_in`.
    #[error("the SAE encodes vectors of {d_in}, got shape {got:?}")]
    InputShape {
        /// The SAE's input width.
        d_in: usize,
        /// The input's shape.
        got: Vec<usize>,
    },
    /// A latent index past the last latent.
    #[error("latent {latent} is out of range; the SAE has {n_latents} latents")]
    LatentOutOfRange {
        /// The index asked for.
        latent: usize,
        /// The latent count.
        n_latents: usize,
    },
    /// The training options are impossible.
    #[error(transparent)]
    Train(TrainConfigProblem),
    /// The first batch of activations is not (N, d_in).
    #[error("the activations are {got:?} wide, the SAE expects {d_in}")]
    FirstBatch {
        /// The batch's shape.
        got: Vec<usize>,
        /// The SAE's input width.
        d_in: usize,
    },
    /// The activation source is not `d_in` wide.
    #[error("the activations are {got} wide, the SAE expects {d_in}")]
    SourceWidth {
        /// The source's width.
        got: usize,
        /// The SAE's input width.
        d_in: usize,
    },
    /// A training batch is not `d_in` wide.
    #[error("the batch is {got} wide, the SAE expects {d_in}")]
    BatchWidth {
        /// The batch's width.
        got: usize,
        /// The SAE's input width.
        d_in: usize,
    },
    /// An evaluation corpus shorter than one window.
    #[error("{tokens} tokens are fewer than one window of {window}")]
    TooFewTokens {
        /// Tokens available.
        tokens: usize,
        /// Tokens one window needs (sequence length + 1).
        window: usize,
    },
    /// The forward did not record the SAE's hook.
    #[error("the model recorded nothing at {hook}")]
    NotRecorded {
        /// The hook.
        hook: String,
    },
}

/// Why a training run's files cannot be resumed, or its folder not used.
#[derive(Debug, thiserror::Error)]
pub enum RunProblem {
    /// A run file is not the json this build writes.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The saved dead-latent counters do not match the latent count.
    #[error("{counters} dead-latent counters for {n_latents} latents")]
    Counters {
        /// Counters saved.
        counters: usize,
        /// The SAE's latent count.
        n_latents: usize,
    },
    /// The saved optimiser state does not fit the SAE's parameters.
    #[error(transparent)]
    Optimizer(#[from] crate::optim::adamw::OptimStateError),
    /// `--resume` with options other than the saved run's.
    #[error("the run there used other options; resume with the same ones")]
    OtherOptions,
    /// A new run into a folder that holds one.
    #[error("holds a run already; pass --resume to continue it or choose another folder")]
    HoldsRun,
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SaeError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> SaeError + '_ {
    move |source| SaeError::Io {
        path: path.to_path_buf(),
        source,
    }
}
