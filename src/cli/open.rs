//! `circuitscope open`: the workbench (terminal UI) on a model and one of its circuits, with a session.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::tui::{self, ColorMode, Theme};
use crate::workbench::OpenOptions;

const DEFAULT_MODEL: &str = "assets/models/tinypython-sparse";

/// Arguments of `circuitscope open`.
#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// Model directory (default: the session's model, else assets/models/tinypython-sparse).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Circuit file (default: the session's circuit, else assets/circuits/<model dir name>/<task>.json).
    #[arg(long, conflicts_with = "task")]
    pub circuit: Option<PathBuf>,
    /// Task whose bundled circuit to open.
    #[arg(long)]
    pub task: Option<String>,
    /// Session file: annotations, evidence, prompts, ablations, cursor and marks, saved after every change
    /// (default: sessions/<model dir name>-<task>.json).
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// An SAE folder (ours or SAELens's) on one of the model's hooks: its features `<hook>.sae[i]` can be
    /// inspected (`:goto 1.resid_mid.sae[12]`), labeled and ablated; `scan --sae` gives their exemplars.
    #[arg(long, value_name = "DIR")]
    pub sae: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: OpenArgs) -> Result<()> {
    // A session names its model and circuit; they are the defaults when it is given alone.
    let from_session = args
        .session
        .as_ref()
        .and_then(|p| crate::session::store::load(p).ok().flatten());
    let model = args
        .model
        .or_else(|| {
            from_session
                .as_ref()
                .and_then(|s| s.model.path.clone())
                .map(PathBuf::from)
                .filter(|p| p.exists())
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let circuit = args.circuit.or_else(|| {
        if args.task.is_some() {
            return None;
        }
        from_session
            .as_ref()
            .map(|s| PathBuf::from(&s.circuit.path))
            .filter(|p| p.exists())
    });
    let task = args
        .task
        .or_else(|| {
            from_session
                .as_ref()
                .map(|s| s.circuit.task.clone())
                .filter(|t| !t.is_empty())
        })
        .unwrap_or_else(|| "bracket_counting".into());
    let session = Some(
        args.session
            .clone()
            .unwrap_or_else(|| OpenOptions::default_session(&model, &task)),
    );
    let mut opts = OpenOptions {
        model,
        circuit,
        task,
        session,
        sae: args.sae,
    };
    loop {
        match open_once(&opts)? {
            // `:task NAME`: the same model on that task's circuit beside the current one, with its own session.
            Some(task) => {
                let circuit = opts.circuit_path().with_file_name(format!("{task}.json"));
                opts.session = Some(OpenOptions::default_session(&opts.model, &task));
                opts.circuit = Some(circuit);
                opts.task = task;
            }
            None => return Ok(()),
        }
    }
}

fn open_once(opts: &OpenOptions) -> Result<Option<String>> {
    let theme = Theme::new(ColorMode::detect());
    let loaded = tui::load(opts, theme)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("`open` needs an interactive terminal (stdin and stdout are not both a terminal)");
    }
    let (w, h) = ratatui::crossterm::terminal::size()?;
    if w < tui::app::MIN_WIDTH || h < tui::app::MIN_HEIGHT {
        bail!(
            "the terminal is {w}x{h}; the workbench needs at least {}x{}",
            tui::app::MIN_WIDTH,
            tui::app::MIN_HEIGHT
        );
    }
    Ok(tui::run_terminal(loaded)?)
}
