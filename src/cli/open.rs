//! `circuitscope open`: the workbench (terminal UI) on a model and one of its circuits.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::tui::{self, ColorMode, OpenOptions, Theme};

#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// Model directory.
    #[arg(long, default_value = "assets/models/tinypython-sparse")]
    pub model: PathBuf,
    /// Circuit file (default: assets/circuits/<model dir name>/<task>.json).
    #[arg(long, conflicts_with = "task")]
    pub circuit: Option<PathBuf>,
    /// Task whose bundled circuit to open.
    #[arg(long)]
    pub task: Option<String>,
    /// Session file (annotations, saved prompts); sessions arrive in the next issue, so this is only noted.
    #[arg(long)]
    pub session: Option<PathBuf>,
}

pub fn run(args: OpenArgs) -> Result<()> {
    let opts = OpenOptions {
        model: args.model,
        circuit: args.circuit,
        task: args.task.unwrap_or_else(|| "bracket_counting".into()),
    };
    let theme = Theme::new(ColorMode::detect());
    let mut loaded = tui::load(&opts, theme)?;
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
    if let Some(s) = &args.session {
        loaded.app.session_path = Some(s.clone());
        loaded.app.status = format!(
            "--session {}: sessions arrive in the next issue; notes and marks are kept until quit",
            s.display()
        );
    }
    tui::run_terminal(loaded)?;
    Ok(())
}
