//! `circuitscope synth`: a random weight-sparse model of a reference shape, or a random dense GPT-2 in Hugging
//! Face's layout, for tests and benchmarks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde_json::json;

use super::common::{parse_density, print_json};
use crate::model::checkpoint::{write_atomic, write_safetensors};
use crate::model::hf_gpt2::{self, Gpt2Shape};
use crate::model::synth::{synth_tensors, SynthShape};

/// What `synth --shape` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeArg {
    /// The reference's tiny weight-sparse shape.
    Tiny,
    /// The paper's 1x sweep shape.
    Sweep1x,
    /// csp_yolo2's shape.
    Yolo2,
    /// A dense GPT-2 small (124M parameters) in Hugging Face's layout.
    #[value(name = "gpt2-small")]
    Gpt2Small,
    /// A dense 2-layer, d_model 64 GPT-2 in Hugging Face's layout.
    #[value(name = "gpt2-tiny")]
    Gpt2Tiny,
}

/// Arguments of `circuitscope synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// The reference shape.
    #[arg(long, value_enum)]
    pub shape: ShapeArg,
    /// Weight density of every matrix (decimal or fraction, e.g. 1/256); required for the weight-sparse
    /// shapes, refused for the dense GPT-2 ones.
    #[arg(long, value_parser = parse_density, allow_hyphen_values = true)]
    pub density: Option<f64>,
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
    let (config_out, weights_out) = (args.out_dir.join("config.json"), args.out_dir.join("model.safetensors"));
    if !args.force && (config_out.exists() || weights_out.exists()) {
        bail!(
            "{} already holds a model; pass --force to overwrite it",
            args.out_dir.display()
        );
    }
    let (sparse, gpt2) = match args.shape {
        ShapeArg::Tiny => (SynthShape::Tiny, None),
        ShapeArg::Sweep1x => (SynthShape::Sweep1x, None),
        ShapeArg::Yolo2 => (SynthShape::Yolo2, None),
        ShapeArg::Gpt2Small => (SynthShape::Tiny, Some(Gpt2Shape::Small)),
        ShapeArg::Gpt2Tiny => (SynthShape::Tiny, Some(Gpt2Shape::Tiny)),
    };
    let shape_name = args
        .shape
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let (cfg_json, tensors, density) = match (gpt2, args.density) {
        (Some(_), Some(_)) => bail!("--density: `{shape_name}` is a dense GPT-2; leave --density out"),
        (None, None) => bail!("--density is required for `{shape_name}` (e.g. --density 1/256)"),
        (Some(shape), None) => {
            let json = shape.config_json();
            let cfg = hf_gpt2::config_from_json_str(&json.to_string())
                .map_err(anyhow::Error::new)?
                .config;
            let text = serde_json::to_string_pretty(&json)?;
            (text, hf_gpt2::synth_tensors(&cfg, args.seed)?, 1.0)
        }
        (None, Some(density)) => {
            let cfg = sparse.config();
            (cfg.to_json_string(), synth_tensors(&cfg, density, args.seed)?, density)
        }
    };
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let nnz: usize = tensors
        .values()
        .map(|t| match t {
            crate::model::Stored::Csr(w) => w.nnz(),
            crate::model::Stored::Dense(t) => t.elem_count(),
        })
        .sum();
    let mut meta = vec![
        ("synth_shape".to_string(), shape_name),
        ("synth_density".to_string(), density.to_string()),
        ("synth_seed".to_string(), args.seed.to_string()),
    ];
    if gpt2.is_some() {
        // What transformers' loader requires of a safetensors file it reads.
        meta.push(("format".to_string(), "pt".to_string()));
    }
    write_safetensors(&weights_out, &tensors, &meta)?;
    write_atomic(&config_out, cfg_json.as_bytes())?;
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
