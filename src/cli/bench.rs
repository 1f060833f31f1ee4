//! `circuitscope bench forward`: tokens/s and peak RSS of the sparse (CSR kernel) and dense (matmul) forward
//! on the same weights. Each path runs in its own child process so that the peak RSS of one does not hide the
//! other's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::common::{load_model, print_json};
use crate::model::{Hooks, LoadOptions};

/// `circuitscope bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Forward-pass throughput and memory, sparse vs dense path.
    Forward(ForwardArgs),
    /// The workbench: start-up to first frame, prompt-lab keystroke to redrawn result.
    Tui(super::bench_tui::TuiBenchArgs),
}

/// Arguments of `circuitscope bench forward`.
#[derive(clap::Args, Debug, Clone)]
pub struct ForwardArgs {
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Sequence length of each forward pass.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Timed repetitions per path (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Run only one path, in this process, and print its figures alone (the per-path child processes use it
    /// too); `dense` for a dense model such as a GPT-2, whose sparse path would only time a conversion.
    #[arg(long, value_parser = ["sparse", "dense"])]
    pub only: Option<String>,
    /// Run the differentiable graph path (what training and pruning use) instead of the inference path.
    #[arg(long)]
    pub graph: bool,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward(a) => forward(a),
        BenchCommand::Tui(a) => super::bench_tui::run(a),
    }
}

fn forward(args: ForwardArgs) -> Result<()> {
    if args.tokens == 0 || args.iters == 0 {
        bail!("--tokens and --iters must be positive");
    }
    if let Some(path) = &args.only {
        let r = measure(&args, path == "sparse")?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the circuitscope binary")?;
    let mut results = serde_json::Map::new();
    for path in ["sparse", "dense"] {
        eprintln!(
            "bench forward: {path} path, {} tokens x {} iters ...",
            args.tokens, args.iters
        );
        let out = std::process::Command::new(&exe)
            .args(["bench", "forward", "--only", path, "--tokens"])
            .arg(args.tokens.to_string())
            .arg("--iters")
            .arg(args.iters.to_string())
            .arg("--model")
            .arg(&args.model)
            .arg("--batch")
            .arg(args.batch.to_string())
            .args(args.graph.then_some("--graph"))
            .output()
            .context("running the benchmark child process")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let msg = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            bail!("{path} path failed: {}", msg.trim_start_matches("error: "));
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("reading the child's result")?;
        results.insert(path.to_string(), v);
    }
    let results = Value::Object(results);
    if args.json {
        return print_json(&results);
    }
    println!(
        "forward of {} tokens on {} ({} rayon threads)",
        args.tokens,
        args.model.display(),
        rayon::current_num_threads()
    );
    println!(
        "  {:<7} {:>12} {:>12} {:>10} {:>14}",
        "path", "tokens/s", "ms/forward", "load ms", "peak RSS MB"
    );
    for path in ["sparse", "dense"] {
        let r = &results[path];
        println!(
            "  {:<7} {:>12.0} {:>12.2} {:>10.0} {:>14.1}",
            path,
            r["tokens_per_s"].as_f64().unwrap_or(0.0),
            r["ms_per_forward"].as_f64().unwrap_or(0.0),
            r["load_ms"].as_f64().unwrap_or(0.0),
            r["peak_rss_mb"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

fn measure(args: &ForwardArgs, sparse: bool) -> Result<Value> {
    let opts = if sparse {
        LoadOptions::ALL_SPARSE
    } else {
        LoadOptions::ALL_DENSE
    };
    let start = Instant::now();
    let model = load_model(&args.model, opts)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    if args.tokens > model.config.block_size {
        bail!(
            "--tokens {} exceeds the model's context {}",
            args.tokens,
            model.config.block_size
        );
    }
    // A fixed pseudo-random token sequence, the same for both paths.
    let vocab = model.config.vocab_size as u64;
    let ids: Vec<u32> = (0..args.tokens as u64)
        .map(|i| ((i.wrapping_mul(2654435761) ^ 0x9e37) % vocab) as u32)
        .collect();
    let batch: Vec<u32> = (0..args.batch.max(1)).flat_map(|_| ids.iter().copied()).collect();
    let tokens = candle_core::Tensor::from_vec(batch, (args.batch.max(1), args.tokens), &candle_core::Device::Cpu)?;
    let run = || -> Result<()> {
        let mut hooks = Hooks::none();
        hooks.differentiable = args.graph;
        model.forward(&tokens, &mut hooks)?;
        Ok(())
    };
    run()?;
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters {
        let t0 = Instant::now();
        run()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (sparse_mats, all_mats) = model.sparse_matrix_count();
    Ok(json!({
        "tokens_per_s": (args.tokens * args.batch.max(1)) as f64 / median,
        "ms_per_forward": median * 1e3,
        "load_ms": load_ms,
        "peak_rss_mb": peak_rss_mb(),
        "csr_matrices": sparse_mats,
        "matrices": all_mats,
        "threads": rayon::current_num_threads(),
    }))
}

/// Peak resident set size of this process (VmHWM), in MB; null where /proc is unavailable.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
