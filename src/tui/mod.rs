//! The workbench: a terminal UI to walk a circuit, read a node's exemplars, probe it with prompts and ablate.
//!
//! Elm-style (ARCHITECTURE.md "TUI"): one [`App`], a [`Msg`] enum, [`update`] and [`view`]. Input, timers and
//! engine replies arrive as messages on one channel; the [`engine`] owns the model on a worker thread and
//! answers with owned summaries, so drawing never waits for a forward pass.

pub mod app;
pub mod circuit_view;
pub mod command;
pub mod engine;
pub mod help;
pub mod keymap;
pub mod msg;
pub mod persist;
pub mod scan_source;
pub mod screens;
pub mod theme;
pub mod view;
pub mod widgets;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

pub use app::{update, App, CircuitView, Mode, Screen};
pub use engine::{Engine, Reply, Request};
pub use msg::Msg;
pub use theme::{ColorMode, Theme};
pub use view::view;

use crate::circuit::{model_fingerprint, CircuitError, CircuitFile, CircuitGraph};
use crate::data::tasks::{self, Split};
use crate::model::{Checkpoint, Config, Gpt, LoadOptions, ModelError, ModelFiles};

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("no circuit file at {path} (task `{task}`): make one with `circuitscope prune`, or pass --circuit FILE")]
    NoCircuit { path: PathBuf, task: String },
    #[error(transparent)]
    Circuit(#[from] CircuitError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("{0}")]
    Other(String),
}

/// What `open` opens.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub model: PathBuf,
    pub circuit: Option<PathBuf>,
    pub task: String,
    /// The session file to restore and save to (None: nothing is kept).
    pub session: Option<PathBuf>,
}

impl OpenOptions {
    /// `sessions/<model dir name>-<task>.json`.
    pub fn default_session(model: &Path, task: &str) -> PathBuf {
        PathBuf::from("sessions").join(format!("{}-{task}.json", model_dir_name(model)))
    }

    /// `assets/circuits/<model dir name>/<task>.json`.
    pub fn default_circuit(model: &Path, task: &str) -> PathBuf {
        PathBuf::from("assets/circuits")
            .join(model_dir_name(model))
            .join(format!("{task}.json"))
    }

    pub fn circuit_path(&self) -> PathBuf {
        self.circuit
            .clone()
            .unwrap_or_else(|| Self::default_circuit(&self.model, &self.task))
    }
}

fn model_dir_name(model: &Path) -> String {
    model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        .or_else(|| model.file_name().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into())
}

/// Everything `open` loads: the app (for the UI thread) and the engine (for the worker), plus warnings.
pub struct Loaded {
    pub app: App,
    pub engine: Engine,
    pub warnings: Vec<String>,
}

/// Loads the model, checks the circuit against it, builds the graph and the engine.
pub fn load(opts: &OpenOptions, theme: Theme) -> Result<Loaded, TuiError> {
    let circuit_path = opts.circuit_path();
    if !circuit_path.exists() {
        return Err(TuiError::NoCircuit {
            path: circuit_path,
            task: opts.task.clone(),
        });
    }
    let files = ModelFiles::locate(&opts.model)?;
    let loaded = Config::load(&files.config)?;
    let mut warnings: Vec<String> = loaded.warnings.clone();
    let cfg = loaded.config;
    let ckpt = Checkpoint::open(&files.weights)?;
    let circuit = CircuitFile::load(&circuit_path)?;
    let fingerprint = model_fingerprint(&ckpt, &cfg)?;
    circuit.check_model(&fingerprint)?;
    circuit.validate(&cfg)?;
    let graph = CircuitGraph::build(&circuit, &cfg, &ckpt)?;
    let model = Gpt::from_checkpoint(cfg.clone(), &ckpt, LoadOptions::default())?;
    let tok = Engine::model_tokenizer(&opts.model).map_err(TuiError::Other)?;
    let scan = match scan_source::ScanSource::open(&opts.model, &fingerprint) {
        Ok(s) => s,
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
        .unwrap_or_else(|| "x = [[1, 2], [3, 4".to_string());
    let model_name = opts
        .model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
        .or_else(|| circuit.model.name.clone())
        .unwrap_or_else(|| "model".into());
    let engine = Engine::new(model, &ckpt, tok, &circuit, &task, scan)?;
    let view = CircuitView::new(circuit, graph, circuit_path.clone(), model_name, cfg.d_head);
    let mut app = App::new(view, task.clone(), &prompt, theme);
    app.embed.d_model = cfg.d_model;
    if let Some(path) = &opts.session {
        let model = crate::session::SessionModel {
            fingerprint: fingerprint.clone(),
            name: Some(app.circuit.model_name.clone()),
            path: Some(opts.model.display().to_string()),
        };
        let circuit_ref = crate::session::CircuitRef {
            path: circuit_path.display().to_string(),
            task: task.clone(),
            nodes: app.circuit.file.nodes.len(),
        };
        let opened =
            crate::session::store::open(path, &fingerprint, || crate::session::Session::new(model, circuit_ref))?;
        warnings.extend(app.attach_session(opened));
    }
    Ok(Loaded { app, engine, warnings })
}

/// Hands the app's queued requests to the engine and feeds the replies back, synchronously, until nothing is
/// queued: what the worker thread does, for tests and the benchmark.
pub fn pump(app: &mut App, engine: &mut Engine) {
    loop {
        let reqs = app.take_requests();
        if reqs.is_empty() {
            return;
        }
        for r in reqs {
            let reply = engine.handle(r);
            update(app, Msg::Engine(reply));
        }
    }
}

/// Runs the UI on the terminal until the user quits; returns the task to reopen on when `:task NAME` quit it.
pub fn run_terminal(loaded: Loaded) -> std::io::Result<Option<String>> {
    use ratatui::crossterm::event::{
        self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    };
    use ratatui::crossterm::execute;

    let Loaded { mut app, engine, .. } = loaded;
    let (tx, rx) = mpsc::channel::<Msg>();
    let to_engine = engine::spawn(engine, tx.clone())?;
    let mut terminal = ratatui::init();
    execute!(std::io::stdout(), EnableMouseCapture, EnableBracketedPaste)?;
    let input_tx = tx.clone();
    // Input and ticks: one thread polls the terminal and posts messages; a tick every 40 ms drives the debounce.
    std::thread::Builder::new()
        .name("circuitscope-input".into())
        .spawn(move || loop {
            let msg = match event::poll(Duration::from_millis(40)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) => Msg::Key(k),
                    Ok(Event::Mouse(m)) => Msg::Mouse(m),
                    Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                    Ok(Event::Paste(s)) => Msg::Paste(s),
                    Ok(_) => continue,
                    Err(_) => return,
                },
                Ok(false) => Msg::Tick,
                Err(_) => return,
            };
            if input_tx.send(msg).is_err() {
                return;
            }
        })?;
    drop(tx);
    let result = (|| -> std::io::Result<()> {
        let size = terminal.size()?;
        app.size = (size.width, size.height);
        loop {
            for r in app.take_requests() {
                if to_engine.send(r).is_err() {
                    return Err(std::io::Error::other("the engine thread stopped"));
                }
            }
            terminal.draw(|f| view(&app, f))?;
            let Ok(first) = rx.recv() else { return Ok(()) };
            let mut redraw = !matches!(first, Msg::Tick);
            update(&mut app, first);
            // Coalesce what has queued up meanwhile, so a burst of keys costs one frame.
            while let Ok(m) = rx.try_recv() {
                redraw |= !matches!(m, Msg::Tick);
                update(&mut app, m);
            }
            if app.quit {
                return Ok(());
            }
            while !redraw && app.outbox.is_empty() {
                let Ok(m) = rx.recv() else { return Ok(()) };
                redraw = !matches!(m, Msg::Tick);
                update(&mut app, m);
                if app.quit {
                    return Ok(());
                }
            }
        }
    })();
    let _ = execute!(std::io::stdout(), DisableMouseCapture, DisableBracketedPaste);
    ratatui::restore();
    result.map(|()| app.switch_task.take())
}
