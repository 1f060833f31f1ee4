//! `circuitscope tasks list` and `circuitscope tasks show`: the built-in minimal-pair tasks and user jsonl tasks.
//!
//! Wiring in `src/main.rs`:
//!
//! ```ignore
//! enum Command {
//!     /// Minimal-pair tasks: list them, show generated pairs.
//!     #[command(subcommand)]
//!     Tasks(cli::tasks::TasksCommand),
//!     // ...
//! }
//! // in main():
//! Command::Tasks(c) => cli::tasks::run(c),
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::data::tasks::{self, JsonlTask, Split, Task, TaskPair, DEFAULT_SEED};
use crate::tokenize::{escape_token, Tokenizer};

/// `circuitscope tasks ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List the built-in tasks: name, description, class-1 / class-2 targets.
    List(ListArgs),
    /// Show generated pairs of a task, with the decision point marked and both targets.
    Show(ShowArgs),
}

/// Arguments of `circuitscope tasks list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Print JSON: `[{"name", "description", "targets": [...]}]`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `circuitscope tasks show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// A built-in task (see `tasks list`); not needed with --jsonl.
    #[arg(required_unless_present = "jsonl")]
    pub name: Option<String>,
    /// A user task file: one `{"prompt", "target", "alt", "prompt_alt"}` record per line.
    #[arg(long, value_name = "FILE", conflicts_with = "name")]
    pub jsonl: Option<PathBuf>,
    /// How many pairs.
    #[arg(short, default_value_t = 3)]
    pub n: usize,
    /// Which split: train, test, or wild (pairs mined from the held-out files of real code, see --corpus).
    #[arg(long, default_value = "train")]
    pub split: Split,
    /// The wild split's real code: `stdlib`, `dir:PATH` or a mix (its real-code parts).
    #[arg(long, default_value = tasks::WILD_CORPUS)]
    pub corpus: String,
    /// The generators' seed.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// A tokenizer.json: also show the targets' token ids and whether each is a single token.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Lines of each prompt to show (the last ones); 0 shows all.
    #[arg(long, default_value_t = 6)]
    pub lines: usize,
    /// Print `{"task": NAME, "pairs": [{"prompt", "target", "prompt_alt", "alt"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `circuitscope tasks ...` subcommand.
pub fn run(cmd: TasksCommand) -> Result<()> {
    let out = match cmd {
        TasksCommand::List(a) => list(&a),
        TasksCommand::Show(a) => show(&a)?,
    };
    print!("{out}");
    Ok(())
}

/// A string shown quoted with its whitespace escaped: `"]]\n"`.
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", escape_token(s))
}

/// The text of `tasks list`.
pub fn list(args: &ListArgs) -> String {
    let reg = tasks::registry();
    if args.json {
        let rows: Vec<serde_json::Value> = reg
            .iter()
            .map(|t| serde_json::json!({"name": t.name(), "description": t.description(), "targets": t.targets()}))
            .collect();
        return serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n";
    }
    let width = reg.iter().map(|t| t.name().len()).max().unwrap_or(0);
    let mut out = String::new();
    for t in &reg {
        let targets = t.targets();
        let shown = match targets.len() {
            1 => format!("{} / (none)", quoted(&targets[0])),
            2 => format!("{} / {}", quoted(&targets[0]), quoted(&targets[1])),
            k => format!(
                "{} … ({k} names, copied)",
                targets
                    .iter()
                    .take(3)
                    .map(|s| quoted(s))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        };
        let _ = writeln!(out, "{:width$}  {shown:<28}  {}", t.name(), t.description());
    }
    out
}

/// The text of `tasks show`.
pub fn show(args: &ShowArgs) -> Result<String> {
    let task: Box<dyn Task> = match (&args.jsonl, &args.name) {
        (Some(path), _) => Box::new(JsonlTask::load(path)?),
        (None, Some(name)) => tasks::lookup(name)?,
        (None, None) => bail!("give a task name or --jsonl FILE"),
    };
    let tok = match &args.tokenizer {
        Some(p) => Some(Tokenizer::load(p).with_context(|| format!("loading tokenizer {}", p.display()))?),
        None => None,
    };
    let pairs = if args.split == Split::Wild {
        let corpus = crate::data::corpus::CorpusSource::parse(&args.corpus)
            .with_context(|| format!("--corpus {}", args.corpus))?;
        if !tasks::wild::has_miner(task.name()) {
            bail!(
                "{} has no wild pairs (see docs/corpus.md); tasks with wild pairs: {}",
                task.name(),
                tasks::wild::WILD_TASKS.join(", ")
            );
        }
        tasks::wild_split(task.name(), &corpus, args.n)?
    } else {
        tasks::split_seeded(task.as_ref(), args.split, args.n, args.seed)
    };
    if args.json {
        let v = serde_json::json!({"task": task.name(), "pairs": pairs});
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", task.name(), task.description());
    let _ = writeln!(out, "split {}, seed {}, {} pairs", args.split, args.seed, pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let _ = writeln!(out, "\n── pair {i} ──");
        show_side(
            &mut out,
            "class 1",
            &p.prompt,
            Some(&p.target),
            args.lines,
            tok.as_ref(),
        )?;
        if p.is_one_sided() {
            let _ = writeln!(
                out,
                "(one-sided: no counterfactual; {} should beat {})",
                quoted(&p.target),
                alt_text(p)
            );
        } else {
            show_side(
                &mut out,
                "class 2",
                &p.prompt_alt,
                p.alt.as_deref(),
                args.lines,
                tok.as_ref(),
            )?;
            let (a, b) = differing_span(&p.prompt, &p.prompt_alt);
            let _ = writeln!(out, "  differs: {} vs {}", quoted(a), quoted(b));
            if p.alt.is_none() {
                let _ = writeln!(out, "  (no alt: class 2 must not continue with {})", quoted(&p.target));
            }
        }
    }
    Ok(out)
}

/// The two prompts without their common prefix and suffix (at char boundaries).
pub fn differing_span<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    let pre: usize = a
        .chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum();
    let (ra, rb) = (&a[pre..], &b[pre..]);
    let suf: usize = ra
        .chars()
        .rev()
        .zip(rb.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum();
    (&ra[..ra.len() - suf], &rb[..rb.len() - suf])
}

fn alt_text(p: &TaskPair) -> String {
    p.alt.as_deref().map_or_else(|| "any other token".to_owned(), quoted)
}

/// One side of a pair: the prompt's last `lines` lines, the decision point marked `⟨here⟩`, then the target.
fn show_side(
    out: &mut String,
    label: &str,
    prompt: &str,
    target: Option<&str>,
    lines: usize,
    tok: Option<&Tokenizer>,
) -> Result<()> {
    let _ = writeln!(out, "{label}:");
    let all: Vec<&str> = prompt.split('\n').collect();
    let from = if lines == 0 { 0 } else { all.len().saturating_sub(lines) };
    if from > 0 {
        let _ = writeln!(out, "  │ … ({from} more above)");
    }
    for (k, line) in all[from..].iter().enumerate() {
        let last = from + k + 1 == all.len();
        let shown = line.replace('\t', "→");
        if last {
            let _ = writeln!(out, "  │ {shown}⟨here⟩");
        } else {
            let _ = writeln!(out, "  │ {shown}");
        }
    }
    match target {
        Some(t) => {
            let mut line = format!("  → {}", quoted(t));
            if let Some(tok) = tok {
                let ids = tok.encode(t)?;
                let single = ids.len() == 1;
                let _ = write!(
                    line,
                    "  ids {:?} {}",
                    ids,
                    if single {
                        "(single token)"
                    } else {
                        "(NOT a single token)"
                    }
                );
                let full = tok.encode(&format!("{prompt}{t}"))?;
                let alone = tok.encode(prompt)?;
                if !full.starts_with(&alone) {
                    line.push_str("  (warning: the prompt's last token merges with the target)");
                }
            }
            let _ = writeln!(out, "{line}");
        }
        None => {
            let _ = writeln!(out, "  → (no alt token)");
        }
    }
    Ok(())
}
