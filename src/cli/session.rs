//! `circuitscope session merge A B -o C`: two analysts' sessions of one model combined.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::session::{self, store, SessionLock};

/// `circuitscope session` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SessionCommand {
    /// Merge two sessions of the same model: annotations united, conflicting labels both kept as a conflict
    /// (resolve it in the UI with :resolve N); the lab state is A's.
    Merge {
        /// The first session (its lab state is kept).
        a: PathBuf,
        /// The second session.
        b: PathBuf,
        /// The merged session (written atomically; may be A or B).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs the subcommand.
pub fn run(cmd: SessionCommand) -> Result<()> {
    match cmd {
        SessionCommand::Merge { a, b, output } => {
            let load = |p: &PathBuf| -> Result<session::Session> {
                store::load(p)?.ok_or_else(|| anyhow!("no session file at {}", p.display()))
            };
            let (sa, sb) = (load(&a)?, load(&b)?);
            let name = |p: &PathBuf| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string())
            };
            let merged = session::merge(&sa, &sb, &name(&a), &name(&b))?;
            // A running workbench on the output would overwrite the merge with its next autosave.
            let _lock = SessionLock::acquire(&output)?;
            store::save(&output, &merged)?;
            let conflicts = merged.annotations.values().filter(|x| !x.conflict.is_empty()).count();
            eprintln!(
                "wrote {}: {} annotations, {conflicts} label conflicts",
                output.display(),
                merged.annotations.len()
            );
            Ok(())
        }
    }
}
