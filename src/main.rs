use std::process::ExitCode;

use clap::{Parser, Subcommand};

use circuitscope::cli;

/// circuitscope: a terminal workbench for circuits in weight-sparse transformers.
#[derive(Parser)]
#[command(name = "circuitscope", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The workbench: walk a circuit, read exemplars, probe with prompts, ablate (terminal UI).
    Open(cli::open::OpenArgs),
    /// Run a prompt: top next tokens, channel magnitudes, hooks, interventions, dumps.
    Run(cli::run::RunArgs),
    /// Convert a checkpoint (e.g. the reference's final_model.pt) to config.json + model.safetensors (CSR).
    Convert(cli::convert::ConvertArgs),
    /// Write a random weight-sparse model of a reference shape (for tests and benchmarks).
    Synth(cli::synth::SynthArgs),
    /// Import (GPT-2 style encoder.json + vocab.bpe) or train (byte-level BPE on a corpus) tokenizers.
    #[command(subcommand)]
    Tokenizer(cli::tokenize::TokenizerCommand),
    /// Tokenize text from stdin (or --text) and print ids and tokens.
    Tokenize(cli::tokenize::TokenizeArgs),
    /// Train a weight-sparse (or dense) model from a preset.
    Train(cli::train::TrainArgs),
    /// Attribution graphs: why a prompt gives a token, node by node, exactly; `attribute show` reads one back.
    Attribute(cli::attribute::AttributeArgs),
    /// The framework lens: every head's QK/OV circuits, copying score, detectors, composition; the direct path.
    Heads(cli::heads::HeadsArgs),
    /// Per-task accuracy and loss, held-out corpus loss and weight density of a model.
    Eval(cli::eval::EvalArgs),
    /// Show corpus documents and composition statistics.
    #[command(subcommand)]
    Corpus(cli::corpus::CorpusCommand),
    /// Minimal-pair tasks: list them, show generated pairs.
    #[command(subcommand)]
    Tasks(cli::tasks::TasksCommand),
    /// Find a task's circuit: train node masks, bisect the circuit size, write a circuit file (spec E).
    Prune(cli::prune::PruneArgs),
    /// A session's markdown report (circuit, losses, mermaid flowchart, nodes, edges, labels with evidence).
    Export(cli::export::ExportArgs),
    /// Session files: merge two analysts' sessions.
    #[command(subcommand)]
    Session(cli::session::SessionCommand),
    /// Scan a corpus: per-node means, density, histogram and exemplars (the ScanIndex); `scan show` prints a node.
    Scan(cli::scan::ScanArgs),
    /// Explain nodes without a language model: N2G token patterns from the scan, scored on held-out text.
    Explain(cli::explain::ExplainArgs),
    /// Circuit files: import the reference viewer's viz_data.pt, show a circuit.
    #[command(subcommand)]
    Circuit(cli::circuit::CircuitCommand),
    /// Sparse autoencoders: train one on a hook, evaluate one (ours or SAELens's).
    #[command(subcommand)]
    Sae(cli::sae::SaeCommand),
    /// Bridged models (a sparse model trained with bridges to a dense one): the path table.
    #[command(subcommand)]
    Bridge(cli::bridge::BridgeCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

fn main() -> ExitCode {
    keep_freed_memory();
    #[cfg(unix)]
    // SAFETY: restores the default SIGPIPE action before any thread exists, so that `circuitscope ... | head`
    // ends quietly like other Unix tools instead of panicking on a closed pipe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Open(a) => cli::open::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Prune(a) => cli::prune::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Session(c) => cli::session::run(c),
        Command::Convert(a) => cli::convert::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Tokenizer(c) => cli::tokenize::run_tokenizer(c),
        Command::Tokenize(a) => cli::tokenize::run_tokenize(a),
        Command::Bench(c) => cli::bench::run(c),
        Command::Scan(a) => cli::scan::run(a),
        Command::Explain(a) => cli::explain::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Corpus(c) => cli::corpus::run(c),
        Command::Tasks(c) => cli::tasks::run(c),
        Command::Circuit(c) => cli::circuit::run(c),
        Command::Eval(a) => cli::eval::run(a),
        Command::Attribute(a) => cli::attribute::run(a),
        Command::Heads(a) => cli::heads::run(a),
        Command::Sae(c) => cli::sae::run(c),
        Command::Bridge(c) => cli::bridge::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A forward pass allocates and frees many buffers of a few MB. glibc returns each to the kernel (munmap) and
/// takes fresh zeroed pages for the next, which cost more than the model's arithmetic (measured: 330 → 200 ms
/// for a 256-token yolo2-shape forward). Keep freed memory in the heap instead; peak RSS is unchanged.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// The error and its causes on one line, outermost first, skipping a cause whose text the previous message
/// already ends with (our errors often include their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = without_backtrace(&cause.to_string());
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

/// The message without a backtrace that a library appended to its Display (candle does when RUST_BACKTRACE is
/// set: ~800 characters of frames inside what should be one line).
fn without_backtrace(text: &str) -> String {
    let is_frame_start = |line: &str| {
        let t = line.trim_start();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        t.starts_with("stack backtrace")
            || t.starts_with("disabled backtrace")
            || t.starts_with("unsupported backtrace")
            || (digits > 0 && t[digits..].starts_with(':'))
    };
    let mut kept = Vec::new();
    for line in text.lines() {
        if !kept.is_empty() && is_frame_start(line) {
            break;
        }
        kept.push(line);
    }
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_cut_from_the_one_line_error() {
        let candle = "shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]\n   0: candle_core::error::Error::bt\n             at src/error.rs:1\n   1: main";
        assert_eq!(
            without_backtrace(candle),
            "shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]"
        );
        assert_eq!(without_backtrace("a\nb"), "a\nb");
        let e = anyhow::anyhow!("{candle}").context("run");
        assert_eq!(one_line(&e), "run: shape mismatch in matmul, lhs: [2, 3], rhs: [4, 5]");
    }
}
