//! The workbench: a terminal UI to walk a circuit, read a node's exemplars, probe it with prompts and ablate.
//!
//! Elm-style (ARCHITECTURE.md "TUI"): one [`App`], a [`Msg`] enum, [`update`] and [`view`](fn@view). Input, timers and
//! engine replies arrive as messages on one channel; the workbench's [`Engine`] owns the model on a worker thread
//! and answers with owned summaries, so drawing never waits for a forward pass. Opening (model, circuit, scan,
//! session) is [`crate::workbench::open()`]; [`load`](fn@load) only adds the UI's state.

pub mod app;
pub mod circuit_view;
pub mod command;
pub mod editor_view;
pub mod help;
pub mod keymap;
pub mod msg;
pub mod persist;
pub mod screens;
pub mod theme;
pub mod view;
pub mod widgets;

use std::sync::mpsc;
use std::time::Duration;

pub use crate::workbench::{Engine, OpenOptions, Reply, Request};
pub use app::{update, App, CircuitView, Mode, Screen};
pub use msg::Msg;
pub use theme::{ColorMode, Theme};
pub use view::view;

use crate::workbench::{self, OpenError, Opened};

/// Why the workbench could not open.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The workbench's files (circuit, model, scan, session) could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Everything `open` loads: the app (for the UI thread) and the engine (for the worker), plus warnings.
pub struct Loaded {
    /// The app model, for the UI thread.
    pub app: App,
    /// The engine that owns the model and its tensors, for the worker thread.
    pub engine: Engine,
    /// What opened but not as asked (from opening the files, then from restoring the session), one line each;
    /// the CLI prints them to stderr before the terminal is taken over.
    pub warnings: Vec<String>,
}

/// Opens the workbench ([`workbench::open()`]) and builds the UI's state on it: the circuit view, the app with
/// `theme`, and the restored session.
pub fn load(opts: &OpenOptions, theme: Theme) -> Result<Loaded, TuiError> {
    let Opened {
        circuit,
        circuit_path,
        graph,
        config,
        model_name,
        task,
        prompt,
        session,
        engine,
        mut warnings,
        explanations,
        bridge_dense,
        ..
    } = workbench::open(opts)?;
    let view = CircuitView::new(
        circuit,
        graph,
        circuit_path,
        model_name,
        (config.n_layer, config.d_head),
    );
    let mut app = App::new(view, task, &prompt, theme);
    app.embed.d_model = config.d_model;
    app.lab.node_std = engine.node_stds();
    app.sae = engine.sae_shape();
    app.auto = explanations;
    app.bridge_dense = bridge_dense.map(|d| d.display().to_string());
    if let Some(opened) = session {
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
    let engine_tx = tx.clone();
    let to_engine = workbench::spawn(engine, move |reply| engine_tx.send(Msg::Engine(reply)).is_ok())?;
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
