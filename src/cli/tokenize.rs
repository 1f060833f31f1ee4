//! `circuitscope tokenizer import` and `circuitscope tokenize`.
//!
//! Wiring in `src/main.rs`:
//!
//! ```ignore
//! use circuitscope::cli::tokenize::{TokenizeArgs, TokenizerCommand};
//!
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Manage tokenizers (import GPT-2 style BPE files).
//!     #[command(subcommand)]
//!     Tokenizer(TokenizerCommand),
//!     /// Tokenize text from stdin (or --text) and print ids and tokens.
//!     Tokenize(TokenizeArgs),
//!     // ...
//! }
//!
//! // in main(), after `let cli = Cli::parse();`:
//! match cli.command {
//!     Command::Tokenizer(cmd) => circuitscope::cli::tokenize::run_tokenizer(cmd),
//!     Command::Tokenize(args) => circuitscope::cli::tokenize::run_tokenize(args),
//!     // ...
//! }
//! ```
//!
//! (`run_tokenizer(TokenizerCommand::Import(args))` is `run_import(args)`.)
//! This gives `circuitscope tokenizer import ENCODER_JSON VOCAB_BPE -o
//! tokenizer.json [--force]` and `circuitscope tokenize --tokenizer FILE
//! [--text TEXT] [--json] [--allow-special]`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::tokenize::{escape_token, import_gpt2_bpe, Tokenizer};

/// `circuitscope tokenizer ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenizerCommand {
    /// Build a tokenizer.json from GPT-2 style encoder.json + vocab.bpe
    /// (tiktoken's data_gym format).
    Import(TokenizerImportArgs),
    /// Train a byte-level BPE tokenizer on a corpus (every task target a single token).
    Train(crate::cli::tokenizer_train::TokenizerTrainArgs),
}

/// Arguments of `circuitscope tokenizer import`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenizerImportArgs {
    /// encoder.json: token (byte-alphabet string) -> id.
    pub encoder_json: PathBuf,
    /// vocab.bpe: a header line, then one merge `A B` per line.
    pub vocab_bpe: PathBuf,
    /// Where to write the tokenizer.json (`-`: standard output).
    #[arg(short, long, default_value = "tokenizer.json")]
    pub output: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `circuitscope tokenize`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenizeArgs {
    /// The tokenizer.json to use.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,
    /// Text to tokenize; without it, all of stdin is read (a trailing
    /// newline included).
    #[arg(long)]
    pub text: Option<String>,
    /// Print `{"ids": [...], "tokens": [...]}` instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Parse special-token text such as `<|endoftext|>` as the special token
    /// (by default it is encoded as ordinary text, like tiktoken's
    /// encode_ordinary).
    #[arg(long)]
    pub allow_special: bool,
}

/// Runs a `circuitscope tokenizer ...` subcommand.
pub fn run_tokenizer(cmd: TokenizerCommand) -> anyhow::Result<()> {
    match cmd {
        TokenizerCommand::Import(args) => run_import(args),
        TokenizerCommand::Train(args) => crate::cli::tokenizer_train::run(args),
    }
}

/// `circuitscope tokenizer import ENCODER_JSON VOCAB_BPE -o OUT [--force]`.
pub fn run_import(args: TokenizerImportArgs) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        bail!(
            "refusing to overwrite {} (pass --force to overwrite)",
            args.output.display()
        );
    }
    let tok = import_gpt2_bpe(&args.encoder_json, &args.vocab_bpe).with_context(|| {
        format!(
            "importing {} + {}",
            args.encoder_json.display(),
            args.vocab_bpe.display()
        )
    })?;
    save_to(&tok, &args.output)?;
    eprintln!(
        "wrote {} (vocab_size {}, <|endoftext|> = {})",
        args.output.display(),
        tok.vocab_size(),
        tok.eot_id().map_or_else(|| "none".to_owned(), |id| id.to_string()),
    );
    Ok(())
}

/// `circuitscope tokenize --tokenizer FILE [--text TEXT] [--json]`.
pub fn run_tokenize(args: TokenizeArgs) -> anyhow::Result<()> {
    let tok = Tokenizer::load(&args.tokenizer)?;
    let text = match args.text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading text from stdin (it must be UTF-8)")?;
            s
        }
    };
    let ids = if args.allow_special {
        tok.encode_with_specials(&text)?
    } else {
        tok.encode(&text)?
    };
    let out = if args.json {
        format_json(&tok, &ids)
    } else {
        format_table(&tok, &ids)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

#[derive(serde::Serialize)]
struct TokenizeJson<'a> {
    ids: &'a [u32],
    tokens: Vec<String>,
}

/// `{"ids":[...],"tokens":[...]}` and a newline; tokens are each token's
/// bytes as lossy UTF-8.
pub fn format_json(tok: &Tokenizer, ids: &[u32]) -> String {
    let tokens = ids.iter().map(|&id| tok.token_display(id)).collect();
    let mut s = serde_json::to_string(&TokenizeJson { ids, tokens }).expect("serializing ids and strings cannot fail");
    s.push('\n');
    s
}

/// A table with one row per token: index, id and the token quoted with
/// escapes (`"\n"`, `" in"`).
pub fn format_table(tok: &Tokenizer, ids: &[u32]) -> String {
    let idx_w = ids.len().saturating_sub(1).to_string().len().max(3);
    let id_w = tok.vocab_size().saturating_sub(1).to_string().len().max(2);
    let mut s = format!("{:>idx_w$}  {:>id_w$}  token\n", "idx", "id");
    for (i, &id) in ids.iter().enumerate() {
        s.push_str(&format!(
            "{i:>idx_w$}  {id:>id_w$}  \"{}\"\n",
            escape_token(&tok.token_display(id))
        ));
    }
    s
}

/// Saves a tokenizer to `out`, where `-` is standard output (see [`crate::fsio::Output`]).
pub(crate) fn save_to(tok: &Tokenizer, out: &std::path::Path) -> anyhow::Result<()> {
    match crate::fsio::Output::from_path(out) {
        crate::fsio::Output::Stdout => {
            let text = tok.inner().to_string(true).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::fsio::Output::Stdout.write(text.as_bytes())?;
        }
        crate::fsio::Output::Path(p) => tok.save(&p)?,
    }
    Ok(())
}
