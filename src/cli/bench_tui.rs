//! `circuitscope bench tui`: the workbench's start-up time to the first frame, and the prompt lab's latency
//! from a keystroke to the redrawn result (edit → forward pass with the circuit's hooks → table, strip and
//! next tokens drawn), on an off-screen 120x40 terminal.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::Terminal;
use serde_json::json;

use super::common::print_json;
use crate::tui::{self, update, ColorMode, Msg, Screen, Theme};
use crate::workbench::OpenOptions;

/// Arguments of `circuitscope bench tui`.
#[derive(clap::Args, Debug, Clone)]
pub struct TuiBenchArgs {
    /// The model directory.
    #[arg(long, default_value = "assets/models/tinypython-sparse")]
    pub model: PathBuf,
    /// Circuit file (default: the bundled circuit of --task, else the test fixture).
    #[arg(long)]
    pub circuit: Option<PathBuf>,
    /// The task whose bundled circuit is opened.
    #[arg(long, default_value = "bracket_counting")]
    pub task: String,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// An SAE folder opened beside the model (`open --sae`): every run then also encodes its hook, and the
    /// lab's table shows its first 8 features.
    #[arg(long, value_name = "DIR")]
    pub sae: Option<PathBuf>,
    /// Timed keystrokes (after 5 warm-up ones); the median and 90th percentile are reported.
    #[arg(long, default_value_t = 40)]
    pub iters: usize,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the subcommand.
pub fn run(args: TuiBenchArgs) -> Result<()> {
    if args.tokens == 0 || args.iters == 0 {
        bail!("--tokens and --iters must be positive");
    }
    let mut circuit = args.circuit.clone();
    if circuit.is_none() && !OpenOptions::default_circuit(&args.model, &args.task).exists() {
        let fixture = PathBuf::from("tests/fixtures/tui/bracket_counting.json");
        eprintln!(
            "bench tui: no bundled circuit for {}; using {}",
            args.task,
            fixture.display()
        );
        circuit = Some(fixture);
    }
    let opts = OpenOptions {
        model: args.model.clone(),
        circuit,
        task: args.task.clone(),
        session: None,
        sae: args.sae.clone(),
    };
    let mut term = Terminal::new(TestBackend::new(120, 40))?;

    // Start-up: load everything and draw the first frame (the first prompt run follows asynchronously).
    let t0 = Instant::now();
    let loaded = tui::load(&opts, Theme::new(ColorMode::TrueColor))?;
    let (mut app, mut engine) = (loaded.app, loaded.engine);
    term.draw(|f| tui::view(&app, f))?;
    let startup_ms = t0.elapsed().as_secs_f64() * 1e3;
    tui::pump(&mut app, &mut engine);
    term.draw(|f| tui::view(&app, f))?;
    let first_result_ms = t0.elapsed().as_secs_f64() * 1e3;

    // A prompt of exactly `tokens` tokens: task prompts back to back, cut at a token boundary.
    let task = crate::data::tasks::resolve(&args.task)?;
    let tok = engine.tokenizer().clone();
    let mut ids = Vec::new();
    let mut i = 0;
    while ids.len() < args.tokens + 1 {
        let p = task.pair(0, i);
        ids.extend(tok.encode(&format!("{}\n", p.prompt))?);
        i += 1;
    }
    // One token short: the timed keystrokes alternate typing a digit (64 tokens) and deleting it.
    ids.truncate(args.tokens - 1);
    let text = tok.decode(&ids);
    app.prompt = ratatui_textarea::TextArea::new(text.split('\n').map(str::to_string).collect());
    app.prompt.move_cursor(ratatui_textarea::CursorMove::Bottom);
    app.prompt.move_cursor(ratatui_textarea::CursorMove::End);
    app.debounce = std::time::Duration::ZERO;
    if let Some((hook, n)) = app.sae {
        // The lab then measures features too, as it does for an analyst who has inspected a few.
        let watched = (0..n.min(8))
            .filter_map(|i| crate::circuit::NodeId::feature(hook, i))
            .collect();
        engine.handle(crate::workbench::Request::WatchFeatures(watched));
    }
    app.set_screen(Screen::Lab);
    update(&mut app, Msg::ch('e'));
    let mut lat = Vec::new();
    let mut lens = Vec::new();
    for k in 0..args.iters + 5 {
        let key = if k % 2 == 0 {
            Msg::ch('7')
        } else {
            Msg::key(KeyCode::Backspace)
        };
        let t = Instant::now();
        update(&mut app, key);
        tui::pump(&mut app, &mut engine);
        term.draw(|f| tui::view(&app, f))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if k >= 5 {
            lat.push(ms);
            lens.push(app.lab.run.as_ref().map_or(0, |r| r.tokens.len()));
        }
    }
    if let Some(e) = &app.lab.error {
        bail!("the prompt lab failed: {e}");
    }
    lat.sort_by(f64::total_cmp);
    let (median, p90) = (percentile(&lat, 0.5), percentile(&lat, 0.9));
    let max_len = lens.iter().copied().max().unwrap_or(0);
    let threads = rayon::current_num_threads();
    if args.json {
        return print_json(&json!({
            "startup_to_first_frame_ms": startup_ms,
            "startup_to_first_result_ms": first_result_ms,
            "keystroke_to_redraw_ms": {"median": median, "p90": p90, "iters": args.iters},
            "prompt_tokens": max_len,
            "circuit_nodes": app.circuit.file.nodes.len(),
            "sae": args.sae,
            "threads": threads,
        }));
    }
    println!(
        "workbench on {} ({} circuit nodes), {threads} threads",
        args.model.display(),
        app.circuit.file.nodes.len()
    );
    if let (Some(dir), Some((hook, n))) = (&args.sae, app.sae) {
        println!(
            "  with the SAE {} on {hook} ({n} latents), 8 features watched",
            dir.display()
        );
    }
    println!("  start-up to first frame      {startup_ms:>8.1} ms   (target < 300 ms)");
    println!("  start-up to first result     {first_result_ms:>8.1} ms");
    println!(
        "  keystroke to redrawn result  {median:>8.2} ms median, {p90:.2} ms p90 over {} keystrokes, {max_len}-token prompt   (target < 30 ms)",
        args.iters
    );
    Ok(())
}
