//! `circuitscope prune --search N`: a small random search over pruning's hyperparameters, each candidate a child
//! `prune` process (so that candidates run side by side on their own cores), keeping the smallest circuit that
//! meets the target on the held-out pairs.
//!
//! The paper tuned pruning per task with CARBS over hundreds of runs; this is the few-run version that fits 2 cores.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::common::print_json;
use super::prune::PruneArgs;
use crate::circuit::{halved, CircuitFile};

/// The hyperparameters of one candidate.
#[derive(Debug, Clone, Serialize)]
struct Draw {
    seed: u64,
    k_coef: f64,
    lr: f64,
    steps: usize,
}

/// What one candidate gave.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    #[serde(flatten)]
    draw: Draw,
    nodes: Option<usize>,
    edges: Option<usize>,
    /// The circuit's held-out loss (raw 2× scale).
    circuit_loss: Option<f64>,
    effective_target: Option<f64>,
    meets_target: bool,
    seconds: f64,
    error: Option<String>,
}

/// Candidate `i`'s hyperparameters: k_coef and lr log-uniform within 3× of the given ones, steps the given or
/// twice as many. Candidate 0 is the given configuration itself, so a search is never worse than a plain prune.
fn draws(a: &PruneArgs) -> Vec<Draw> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed ^ 0x5ea7_c4ed);
    let mut log_around = |x: f64| (x.ln() + rng.random_range(-3f64.ln()..=3f64.ln())).exp();
    (0..a.search)
        .map(|i| {
            if i == 0 {
                return Draw {
                    seed: a.seed,
                    k_coef: a.k_coef,
                    lr: a.lr,
                    steps: a.steps,
                };
            }
            let (k_coef, lr) = (log_around(a.k_coef), log_around(a.lr));
            Draw {
                seed: a.seed + i as u64,
                k_coef,
                lr,
                steps: if i % 2 == 0 { 2 * a.steps } else { a.steps },
            }
        })
        .collect()
}

/// The child `prune` command for one draw, writing its circuit to `out`.
fn command(a: &PruneArgs, d: &Draw, out: &Path, threads: usize, work: &Path, i: usize) -> Result<Command> {
    let exe = std::env::current_exe().context("finding circuitscope's own executable for the search's runs")?;
    let mut c = Command::new(exe);
    c.arg("prune")
        .arg("--model")
        .arg(&a.model)
        .args(["--task", &a.task, "--means", &a.means])
        .args(["--target-loss", &a.target_loss.to_string()])
        .args(["--train-pairs", &a.train_pairs.to_string()])
        .args(["--eval-pairs", &a.eval_pairs.to_string()])
        .args(["--k-anneal-frac", &a.k_anneal_frac.to_string()])
        .args(["--rank", &format!("{:?}", a.rank).to_lowercase()])
        .args(["--k-coef", &d.k_coef.to_string(), "--lr", &d.lr.to_string()])
        .args(["--steps", &d.steps.to_string(), "--seed", &d.seed.to_string()])
        .arg("-o")
        .arg(out)
        .args(["--force", "--json"]);
    if let Some(scan) = &a.scan {
        c.arg("--scan").arg(scan);
    }
    // Files, not pipes: a child must never block on a full pipe while the parent waits for another one.
    let log = |ext: &str| -> Result<Stdio> {
        let p = work.join(format!("{i}.{ext}"));
        Ok(std::fs::File::create(&p)
            .with_context(|| format!("creating {}", p.display()))?
            .into())
    };
    c.env("RAYON_NUM_THREADS", threads.to_string())
        .stdin(Stdio::null())
        .stdout(log("out")?)
        .stderr(log("err")?);
    Ok(c)
}

/// Reads a finished child's JSON line (or its last stderr line, if it failed).
fn outcome(d: &Draw, status: std::process::ExitStatus, work: &Path, i: usize, seconds: f64) -> Outcome {
    let read = |ext: &str| std::fs::read_to_string(work.join(format!("{i}.{ext}"))).unwrap_or_default();
    let mut o = Outcome {
        draw: d.clone(),
        nodes: None,
        edges: None,
        circuit_loss: None,
        effective_target: None,
        meets_target: false,
        seconds,
        error: None,
    };
    let parsed: Option<Value> = serde_json::from_str(read("out").trim()).ok();
    match parsed.filter(|_| status.success()) {
        Some(v) => {
            o.nodes = v["nodes"].as_u64().map(|n| n as usize);
            o.edges = v["edges"].as_u64().map(|n| n as usize);
            o.circuit_loss = v["losses"]["circuit"].as_f64();
            o.effective_target = v["effective_target"].as_f64();
            o.meets_target = matches!((o.circuit_loss, o.effective_target), (Some(l), Some(t)) if l <= t);
        }
        None => {
            let err = read("err");
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            o.error = Some(format!("{status}: {last}"));
        }
    }
    o
}

/// Runs the search and writes the kept circuit to `out`.
pub fn run(a: &PruneArgs, out: &Path) -> Result<()> {
    if a.jobs == 0 {
        bail!("--jobs 0: at least one run at a time");
    }
    let started = Instant::now();
    let draws = draws(a);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = a.jobs.min(draws.len());
    let threads = (cores / jobs).max(1);
    let work = tempfile::Builder::new()
        .prefix("circuitscope-prune-search")
        .tempdir()
        .context("creating a temporary folder for the search's runs")?;
    let file_of = |i: usize| -> PathBuf { work.path().join(format!("{i}.json")) };

    let bar = indicatif::ProgressBar::new(draws.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg} [{elapsed_precise}]")
            .expect("valid template"),
    );
    bar.set_prefix("prune search");
    let mut running: Vec<(usize, Child, Instant)> = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; draws.len()];
    let mut next = 0;
    while next < draws.len() || !running.is_empty() {
        while running.len() < jobs && next < draws.len() {
            let child = command(a, &draws[next], &file_of(next), threads, work.path(), next)?
                .spawn()
                .context("starting a prune run of the search")?;
            running.push((next, child, Instant::now()));
            next += 1;
        }
        let mut still = Vec::with_capacity(running.len());
        for (i, mut child, t0) in running {
            match child.try_wait().context("waiting for a prune run of the search")? {
                Some(status) => {
                    let o = outcome(&draws[i], status, work.path(), i, t0.elapsed().as_secs_f64());
                    bar.set_message(match (o.nodes, o.circuit_loss) {
                        (Some(n), Some(l)) => format!("run {i}: {n} nodes, loss {:.3}", halved(l)),
                        _ => format!("run {i}: failed"),
                    });
                    bar.inc(1);
                    outcomes[i] = Some(o);
                }
                None => still.push((i, child, t0)),
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.expect("every run finished")).collect();

    // The smallest circuit that meets the target; if none does, the one closest to it.
    let ok = |o: &&Outcome| o.error.is_none();
    let chosen = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| ok(o) && o.meets_target)
        .min_by_key(|(_, o)| (o.nodes, o.edges))
        .or_else(|| {
            outcomes.iter().enumerate().filter(|(_, o)| ok(o)).min_by(|a, b| {
                a.1.circuit_loss
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&b.1.circuit_loss.unwrap_or(f64::INFINITY))
            })
        })
        .map(|(i, _)| i);
    let Some(chosen) = chosen else {
        bail!(
            "prune --search: all {} runs failed; the first: {}",
            outcomes.len(),
            outcomes[0].error.as_deref().unwrap_or("?")
        );
    };
    let mut circuit = CircuitFile::load(&file_of(chosen))?;
    if let Some(c) = circuit.prune_config.as_mut() {
        c["search"] = json!({"runs": outcomes, "chosen": chosen, "jobs": jobs, "threads_per_run": threads});
    }
    super::prune::save_circuit(&circuit, out)?;
    let seconds = started.elapsed().as_secs_f64();
    let c = &outcomes[chosen];
    if a.json {
        return print_json(&json!({
            "out": out,
            "task": circuit.task,
            "nodes": c.nodes,
            "edges": c.edges,
            "target_loss": a.target_loss,
            "effective_target": c.effective_target,
            "losses": circuit.losses,
            "seconds": seconds,
            "search": outcomes,
            "chosen": chosen,
        }));
    }
    println!(
        "{:>3} {:>5} {:>10} {:>9} {:>6} {:>6} {:>6} {:>16} {:>8}",
        "run", "seed", "k_coef", "lr", "steps", "nodes", "edges", "loss (halved)", "seconds"
    );
    for (i, o) in outcomes.iter().enumerate() {
        let d = &o.draw;
        let loss = match (o.circuit_loss, &o.error) {
            (Some(l), _) => format!("{:.4}{}", halved(l), if o.meets_target { "" } else { " (over)" }),
            (None, Some(_)) => "failed".into(),
            (None, None) => "-".into(),
        };
        println!(
            "{:>3} {:>5} {:>10.2e} {:>9.2e} {:>6} {:>6} {:>6} {:>16} {:>8.1}{}",
            i,
            d.seed,
            d.k_coef,
            d.lr,
            d.steps,
            n_or(o.nodes),
            n_or(o.edges),
            loss,
            o.seconds,
            if i == chosen { "  ← kept" } else { "" }
        );
        if let Some(e) = &o.error {
            println!("      {e}");
        }
    }
    println!(
        "wrote {}: run {chosen}'s circuit, {} nodes, {} edges{}, in {seconds:.1} s ({jobs} at a time, {threads} thread(s) each)",
        out.display(),
        n_or(c.nodes),
        n_or(c.edges),
        if c.meets_target { "" } else { " (no run met the target: the one closest to it)" }
    );
    Ok(())
}

fn n_or(x: Option<usize>) -> String {
    x.map_or("-".into(), |x| x.to_string())
}
