//! `circuitscope convert`: a reference checkpoint (or any model directory) to our config.json +
//! model.safetensors, with sparse matrices stored as CSR.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{parse_density, print_json};
use crate::fsio::{DirWriter, Keep};
use crate::model::checkpoint::{write_atomic, write_safetensors};
use crate::model::sparse_linear::CsrWeight;
use crate::model::{Gpt, LoadOptions, ModelFiles, Stored};

/// Arguments of `circuitscope convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// A model directory or a checkpoint file (final_model.pt with beeg_config.json beside it).
    pub input: PathBuf,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Store 2-D matrices whose density is below this as CSR (decimal or fraction, e.g. 0.25 or 1/4).
    /// Default: 0.5. Use 1e-9 to store everything dense.
    #[arg(long, value_parser = parse_density)]
    pub sparse_below: Option<f64>,
    /// Overwrite an existing config.json / model.safetensors in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a conversion wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// The model directory written.
    pub out_dir: PathBuf,
    /// Matrices stored as CSR.
    pub csr_matrices: Vec<String>,
    /// Tensors stored dense.
    pub dense_tensors: usize,
    /// Where the tokenizer came from, when one was copied or imported.
    pub tokenizer: Option<String>,
    /// One line per oddity the user should know of.
    pub warnings: Vec<String>,
}

/// Runs the subcommand.
pub fn run(args: ConvertArgs) -> Result<()> {
    let report = convert(&args.input, &args.out_dir, args.sparse_below.unwrap_or(0.5), args.force)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        return print_json(&json!(report));
    }
    println!(
        "wrote {}: {} CSR matrices, {} dense tensors{}",
        report.out_dir.display(),
        report.csr_matrices.len(),
        report.dense_tensors,
        report
            .tokenizer
            .as_ref()
            .map(|t| format!(", tokenizer.json ({t})"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Converts `input` into `out_dir`. The model is fully loaded and checked before anything is written, and
/// existing files are only replaced with `force`.
pub fn convert(input: &Path, out_dir: &Path, sparse_below: f64, force: bool) -> Result<ConvertReport> {
    let files = ModelFiles::locate(input)?;
    let loaded = files.load_config()?;
    let ckpt = files.open_checkpoint(&loaded.config)?;
    // Refuse to write a model that would not load.
    Gpt::from_checkpoint(loaded.config.clone(), &ckpt, LoadOptions::ALL_DENSE)?;

    let config_out = out_dir.join("config.json");
    let weights_out = out_dir.join("model.safetensors");
    if !force {
        for p in [&config_out, &weights_out] {
            if p.exists() {
                bail!("{} exists; pass --force to overwrite it", p.display());
            }
        }
    }
    if same_file(&files.weights, &weights_out) {
        bail!("{}: input and output are the same file", weights_out.display());
    }
    // The model is written into a temp folder and swapped in whole: a reader (or a convert killed at any
    // moment) sees the old model directory or the new one, never new weights beside an old config.
    let writer = DirWriter::begin(out_dir, Keep::Others).with_context(|| format!("writing {}", out_dir.display()))?;
    let staging = writer.path().to_path_buf();

    let mut tensors = BTreeMap::new();
    let mut csr = Vec::new();
    for (name, stored) in &ckpt.tensors {
        let sparse_ok = stored.shape().len() == 2 && name != "bigram_table";
        let out = if sparse_ok && stored.density()? < sparse_below {
            csr.push(name.clone());
            match stored {
                Stored::Csr(w) => Stored::Csr(w.clone()),
                Stored::Dense(t) => Stored::Csr(Arc::new(CsrWeight::from_dense(t)?)),
            }
        } else {
            Stored::Dense(stored.to_dense()?)
        };
        tensors.insert(name.clone(), out);
    }
    let dense_tensors = tensors.len() - csr.len();
    write_safetensors(&staging.join("model.safetensors"), &tensors, &[])?;
    write_atomic(&staging.join("config.json"), loaded.config.to_json_string().as_bytes())?;
    let tokenizer = write_tokenizer(&files, out_dir, &staging, force)?;
    writer
        .commit()
        .with_context(|| format!("writing {}", out_dir.display()))?;
    Ok(ConvertReport {
        out_dir: out_dir.to_path_buf(),
        csr_matrices: csr,
        dense_tensors,
        tokenizer,
        warnings: loaded.warnings,
    })
}

/// Copies tokenizer.json, or imports encoder.json + vocab.bpe found beside the checkpoint, into `staging`
/// (the new `out_dir`); a tokenizer kept in `out_dir` is carried over by the folder swap.
fn write_tokenizer(files: &ModelFiles, out_dir: &Path, staging: &Path, force: bool) -> Result<Option<String>> {
    let existing = out_dir.join("tokenizer.json");
    let out = staging.join("tokenizer.json");
    if existing.exists() && !force {
        return Ok(Some("kept existing".into()));
    }
    if let Some(src) = &files.tokenizer {
        if !same_file(src, &existing) {
            let bytes = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
            write_atomic(&out, &bytes)?;
        }
        return Ok(Some("copied".into()));
    }
    let dir = files.weights.parent().unwrap_or(Path::new("."));
    let (enc, bpe) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    if enc.exists() && bpe.exists() {
        let tok = crate::tokenize::import_gpt2_bpe(&enc, &bpe)?;
        tok.save(&out)?;
        return Ok(Some("imported from encoder.json + vocab.bpe".into()));
    }
    Ok(None)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
