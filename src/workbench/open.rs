//! Opening a model, one of its circuits, its scan and a session, once: the model directory is located, its
//! checkpoint mapped and its config loaded one time, and everything the workbench needs is built from them.

use std::path::{Path, PathBuf};

use super::engine::{Engine, EngineError};
use super::scan_source::ScanSource;
use crate::circuit::{model_fingerprint, CircuitError, CircuitFile, CircuitGraph};
use crate::data::tasks::{self, Split};
use crate::model::{Config, Gpt, LoadOptions, ModelError, ModelFiles};
use crate::session::store::OpenedSession;
use crate::session::{CircuitRef, Session, SessionError, SessionModel};
use crate::tokenize::{TokenizeError, Tokenizer};

/// The lab's first prompt when the task is unknown.
const FALLBACK_PROMPT: &str = "x = [[1, 2], [3, 4";

/// Why a model, circuit and session could not be opened together.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No circuit file was given and the task has no bundled one.
    #[error("no circuit file at {path} (task `{task}`): make one with `circuitscope prune`, or pass --circuit FILE")]
    NoCircuit {
        /// Where the circuit was looked for.
        path: PathBuf,
        /// The task.
        task: String,
    },
    /// A task name that is no task (a typo): the valid names are listed.
    #[error("unknown task `{task}`; the tasks are: {known}")]
    UnknownTask {
        /// The name as given.
        task: String,
        /// The valid names, comma-separated.
        known: String,
    },
    /// The model directory has no tokenizer.
    #[error("{}: no tokenizer.json beside the model", dir.display())]
    NoTokenizer {
        /// The model directory.
        dir: PathBuf,
    },
    /// The tokenizer could not be loaded.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// The circuit file is unreadable or does not fit the model.
    #[error(transparent)]
    Circuit(#[from] CircuitError),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The session could not be opened.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The SAE could not be read or does not fit the model.
    #[error("--sae {}: {source}", path.display())]
    Sae {
        /// The SAE folder.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<crate::analysis::sae::SaeError>,
    },
}

/// What to open.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The model directory (or weights file).
    pub model: PathBuf,
    /// The circuit file; `None`: the task's bundled circuit ([`OpenOptions::default_circuit`]).
    pub circuit: Option<PathBuf>,
    /// The task, used when the circuit file names none.
    pub task: String,
    /// The session file to restore and save to (None: nothing is kept).
    pub session: Option<PathBuf>,
    /// An SAE folder (ours or SAELens's) whose features the workbench shows as nodes `<hook>.sae[i]`.
    pub sae: Option<PathBuf>,
}

impl OpenOptions {
    /// `sessions/<model dir name>-<task>.json`.
    pub fn default_session(model: &Path, task: &str) -> PathBuf {
        PathBuf::from("sessions").join(format!("{}-{task}.json", model_dir_name(model)))
    }

    /// `assets/circuits/<model dir name>/<task>.json`.
    pub fn default_circuit(model: &Path, task: &str) -> PathBuf {
        circuit_in(&model_dir_name(model), task)
    }

    /// The circuit file: the one given, else the bundled one of the task.
    pub fn circuit_path(&self) -> PathBuf {
        self.circuit
            .clone()
            .unwrap_or_else(|| Self::default_circuit(&self.model, &self.task))
    }
}

/// `assets/circuits/<dir name>/<task>.json`.
fn circuit_in(dir_name: &str, task: &str) -> PathBuf {
    PathBuf::from("assets/circuits")
        .join(dir_name)
        .join(format!("{task}.json"))
}

/// The model directory's name as the user sees it (after resolving `.` and links).
fn model_dir_name(model: &Path) -> String {
    dir_name(canonical_name(model), model)
}

/// The last component of the canonical path, when the path resolves.
fn canonical_name(model: &Path) -> Option<String> {
    model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
}

/// The canonical name, else the path's own last component, else "model".
fn dir_name(canonical: Option<String>, model: &Path) -> String {
    canonical
        .or_else(|| model.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

/// Everything an open loads: the circuit and its graph checked against the model, the engine (model, tokenizer,
/// scan) for the worker, the session when one was asked for, and warnings for the user.
pub struct Opened {
    /// The circuit, validated against the model.
    pub circuit: CircuitFile,
    /// Where the circuit was read from.
    pub circuit_path: PathBuf,
    /// The circuit's graph with its weight edges.
    pub graph: CircuitGraph,
    /// The model's configuration.
    pub config: Config,
    /// The model's fingerprint, which the circuit and the session must carry.
    pub fingerprint: String,
    /// The model directory's name, else the circuit's model name.
    pub model_name: String,
    /// The circuit's own task, else the one asked for.
    pub task: String,
    /// The task's first training prompt: where the prompt lab starts.
    pub prompt: String,
    /// The session, when one was asked for (read-only when another process holds it).
    pub session: Option<OpenedSession>,
    /// The engine, to be moved onto the worker thread.
    pub engine: Engine,
    /// One line per thing the user should know (config oddities, an unusable scan, a session for another model).
    pub warnings: Vec<String>,
    /// The circuit nodes' automatic explanations stored beside the scan (empty when none were made).
    pub explanations: std::collections::BTreeMap<crate::circuit::NodeId, super::AutoLabel>,
    /// The dense model's folder when the model is a bridged one (its bridges are in the engine, for `:bridge`).
    pub bridge_dense: Option<PathBuf>,
}

/// A built-in task's description and its targets (None: no built-in task of that name).
pub fn task_description(name: &str) -> Option<(String, Vec<String>)> {
    tasks::by_name(name).map(|t| (t.description().to_string(), t.targets()))
}

/// The built-in tasks' names, in the registry's order.
pub fn task_names() -> Vec<&'static str> {
    tasks::names()
}

/// Loads the model, checks the circuit against it, builds the graph and the engine, and opens the session.
pub fn open(opts: &OpenOptions) -> Result<Opened, OpenError> {
    // The path is resolved once: for the default circuit and for the name the UI and the session show.
    let canonical = canonical_name(&opts.model);
    let circuit_path = opts
        .circuit
        .clone()
        .unwrap_or_else(|| circuit_in(&dir_name(canonical.clone(), &opts.model), &opts.task));
    if !circuit_path.exists() && opts.circuit.is_none() && tasks::by_name(&opts.task).is_none() {
        return Err(OpenError::UnknownTask {
            task: opts.task.clone(),
            known: tasks::names().join(", "),
        });
    }
    if !circuit_path.exists() {
        return Err(OpenError::NoCircuit {
            path: circuit_path,
            task: opts.task.clone(),
        });
    }
    let files = ModelFiles::locate(&opts.model)?;
    let loaded = files.load_config()?;
    let mut warnings: Vec<String> = loaded.warnings.clone();
    let config = loaded.config;
    let ckpt = files.open_checkpoint(&config)?;
    let circuit = CircuitFile::load(&circuit_path)?;
    let fingerprint = model_fingerprint(&ckpt, &config)?;
    circuit.check_model(&fingerprint)?;
    circuit.validate(&config)?;
    let graph = CircuitGraph::build(&circuit, &config, &ckpt)?;
    let model = Gpt::from_checkpoint(config.clone(), &ckpt, LoadOptions::default())?;
    // The same load-time checks as `run`: NaN weights and tensors the config does not use are refused.
    warnings.extend(ckpt.audit(&config, &LoadOptions::default())?);
    let tok = tokenizer_of(&files, &opts.model)?;
    let scan = match ScanSource::open(&opts.model, &fingerprint) {
        Ok(s) => {
            if let Some(s) = &s {
                warnings.extend(s.skipped().iter().map(|e| format!("scan not used: {e}")));
            }
            s
        }
        Err(e) => {
            warnings.push(format!("scan not used: {e}"));
            None
        }
    };
    // The circuit's own task wins over --task's default when the file names one.
    let task = if circuit.task.is_empty() {
        opts.task.clone()
    } else {
        circuit.task.clone()
    };
    let prompt = tasks::resolve(&task)
        .ok()
        .and_then(|t| tasks::split(t.as_ref(), Split::Train, 1).into_iter().next())
        .map(|p| p.prompt)
        .unwrap_or_else(|| FALLBACK_PROMPT.to_string());
    let model_name = canonical
        .or_else(|| circuit.model.name.clone())
        .unwrap_or_else(|| "model".into());
    let mut engine = Engine::new(model, &ckpt, tok, &circuit, &task, scan)?;
    if let Some(path) = &opts.sae {
        let sae_err = |source| OpenError::Sae {
            path: path.clone(),
            source: Box::new(source),
        };
        let sae = crate::analysis::sae::Sae::load(path, config.n_layer).map_err(sae_err)?;
        sae.check_model(&config, Some(&fingerprint)).map_err(sae_err)?;
        warnings.extend(engine.set_sae(sae)?);
    }
    // The features' explanations are shown only when the scan they were made from ran this very SAE.
    let features: Vec<crate::circuit::NodeId> = match engine.sae_shape() {
        Some((hook, n)) if engine.features_scanned() => (0..n)
            .filter_map(|i| crate::circuit::NodeId::feature(hook, i))
            .collect(),
        _ => Vec::new(),
    };
    let nodes = circuit.nodes.iter().map(|n| n.id).chain(features);
    let explanations = match super::auto_labels::load(&opts.model, &fingerprint, nodes) {
        Ok(e) => e,
        Err(e) => {
            warnings.push(format!("explanations not used: {e}"));
            Default::default()
        }
    };
    // A bridged model's dense half, for `:bridge on`; bridges that do not open leave the sparse model usable.
    let model_dir = if opts.model.is_dir() {
        opts.model.clone()
    } else {
        opts.model.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    if model_dir.join(crate::analysis::bridge::BRIDGE_JSON).exists() {
        match crate::analysis::bridge::open_bridges(&model_dir, &config, None, LoadOptions::default()) {
            Ok(parts) => engine.attach_bridge(parts),
            Err(e) => warnings.push(format!("bridges not used: {e}")),
        }
    }
    let bridge_dense = engine.bridge_dense().map(Path::to_path_buf);
    let session = match &opts.session {
        Some(path) => {
            let model = SessionModel {
                fingerprint: fingerprint.clone(),
                name: Some(model_name.clone()),
                path: Some(opts.model.display().to_string()),
            };
            let circuit_ref = CircuitRef {
                path: circuit_path.display().to_string(),
                task: task.clone(),
                nodes: circuit.nodes.len(),
            };
            Some(crate::session::store::open(path, &fingerprint, || {
                Session::new(model, circuit_ref)
            })?)
        }
        None => None,
    };
    Ok(Opened {
        circuit,
        circuit_path,
        graph,
        config,
        fingerprint,
        model_name,
        task,
        prompt,
        session,
        engine,
        warnings,
        explanations,
        bridge_dense,
    })
}

/// The tokenizer beside a located model.
fn tokenizer_of(files: &ModelFiles, dir: &Path) -> Result<Tokenizer, OpenError> {
    let path = files
        .tokenizer
        .as_ref()
        .ok_or_else(|| OpenError::NoTokenizer { dir: dir.to_path_buf() })?;
    Ok(Tokenizer::load(path)?)
}

/// The tokenizer of the model at `dir` (a model directory or a weights file with its config beside it).
pub fn model_tokenizer(dir: &Path) -> Result<Tokenizer, OpenError> {
    tokenizer_of(&ModelFiles::locate(dir)?, dir)
}
