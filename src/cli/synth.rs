//! `circuitscope synth`: a random weight-sparse model of a reference shape, for tests and benchmarks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::common::{parse_density, print_json};
use crate::model::checkpoint::{write_atomic, write_safetensors};
use crate::model::synth::{synth_tensors, SynthShape};

/// Arguments of `circuitscope synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// The reference shape.
    #[arg(long, value_enum)]
    pub shape: SynthShape,
    /// Weight density of every matrix (decimal or fraction, e.g. 1/256).
    #[arg(long, value_parser = parse_density)]
    pub density: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Overwrite an existing model in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(args: SynthArgs) -> Result<()> {
    let cfg = args.shape.config();
    let (config_out, weights_out) = (args.out_dir.join("config.json"), args.out_dir.join("model.safetensors"));
    if !args.force && (config_out.exists() || weights_out.exists()) {
        bail!(
            "{} already holds a model; pass --force to overwrite it",
            args.out_dir.display()
        );
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let tensors = synth_tensors(&cfg, args.density, args.seed)?;
    let nnz: usize = tensors
        .values()
        .map(|t| match t {
            crate::model::Stored::Csr(w) => w.nnz(),
            crate::model::Stored::Dense(t) => t.elem_count(),
        })
        .sum();
    let meta = [
        ("synth_shape".to_string(), format!("{:?}", args.shape).to_lowercase()),
        ("synth_density".to_string(), args.density.to_string()),
        ("synth_seed".to_string(), args.seed.to_string()),
    ];
    write_safetensors(&weights_out, &tensors, &meta)?;
    write_atomic(&config_out, cfg.to_json_string().as_bytes())?;
    let bytes = std::fs::metadata(&weights_out).map(|m| m.len()).unwrap_or(0);
    if args.json {
        return print_json(&json!({"out_dir": args.out_dir, "stored_values": nnz, "bytes": bytes}));
    }
    println!(
        "wrote {} ({} stored values, {:.1} MB)",
        args.out_dir.display(),
        nnz,
        bytes as f64 / 1e6
    );
    Ok(())
}
