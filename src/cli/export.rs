//! `circuitscope export SESSION`: the session's markdown report (or JSON with --json).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::analysis::scan::ScanIndex;
use crate::circuit::CircuitFile;
use crate::export::{self, ReportInput};
use crate::session::store;
use crate::workbench;

/// Arguments of `circuitscope export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The session file.
    pub session: PathBuf,
    /// Write here (atomically) instead of to stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Circuit file (default: the one the session names).
    #[arg(long)]
    pub circuit: Option<PathBuf>,
    /// Model directory, for the scan's exemplars and the tokenizer (default: the one the session names).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Top exemplars per labeled node.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
}

/// Runs the subcommand.
pub fn run(args: ExportArgs) -> Result<()> {
    let session =
        store::load(&args.session)?.ok_or_else(|| anyhow!("no session file at {}", args.session.display()))?;
    let circuit_path = args
        .circuit
        .clone()
        .unwrap_or_else(|| PathBuf::from(&session.circuit.path));
    let circuit = CircuitFile::load(&circuit_path)
        .with_context(|| format!("the session's circuit {} (pass --circuit FILE)", circuit_path.display()))?;
    if circuit.model.fingerprint != session.model.fingerprint {
        bail!(
            "{} is a session of model {}, but the circuit {} was made for model {}",
            args.session.display(),
            session.model.fingerprint,
            circuit_path.display(),
            circuit.model.fingerprint
        );
    }
    let model_dir = args
        .model
        .clone()
        .or_else(|| session.model.path.clone().map(PathBuf::from));
    let mut exemplars = BTreeMap::new();
    match &model_dir {
        Some(dir) => {
            let scan = ScanIndex::open_for(&ScanIndex::default_dir(dir), &session.model.fingerprint);
            let tok = workbench::model_tokenizer(dir);
            match (scan, tok) {
                (Ok(scan), Ok(tok)) => {
                    exemplars = export::scan_exemplars(&scan, &tok, circuit.node_ids(), args.top);
                }
                (Err(e), _) => eprintln!("warning: no exemplars in the report: {e}"),
                (_, Err(e)) => eprintln!("warning: no exemplars in the report: {e}"),
            }
        }
        None => eprintln!("warning: no exemplars in the report: the session names no model (pass --model DIR)"),
    }
    let input = ReportInput {
        session: &session,
        circuit: &circuit,
        exemplars,
        top_k: args.top,
    };
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&export::json(&input))?;
        s.push('\n');
        s
    } else {
        export::markdown(&input)
    };
    match &args.output {
        Some(p) => match crate::fsio::Output::from_path(p) {
            crate::fsio::Output::Stdout => crate::fsio::Output::Stdout.write(text.as_bytes())?,
            crate::fsio::Output::Path(p) => {
                store::write_atomic(&p, text.as_bytes())?;
                eprintln!("wrote {}", p.display());
            }
        },
        None => print!("{text}"),
    }
    Ok(())
}
