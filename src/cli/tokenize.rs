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
    let ids = match &args.text {
        Some(t) => encode(&tok, t, args.allow_special)?,
        None => encode_stream(&tok, std::io::stdin().lock(), args.allow_special, STREAM_CHUNK)?,
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        write_json(&mut stdout, &tok, &ids)?;
    } else {
        write_table(&mut stdout, &tok, &ids)?;
    }
    stdout.flush()?;
    Ok(())
}

/// How much stdin is encoded at a time. The tokenizers crate takes ~200 bytes of memory per input byte, so a
/// whole 50 MB stdin once took 11.7 GB; in chunks, memory is this times that plus 4 bytes per token.
const STREAM_CHUNK: usize = 1 << 20;

fn encode(tok: &Tokenizer, text: &str, allow_special: bool) -> anyhow::Result<Vec<u32>> {
    Ok(if allow_special {
        tok.encode_with_specials(text)?
    } else {
        tok.encode(text)?
    })
}

/// Encodes `reader`'s text in chunks of about `chunk` bytes, cut only where the byte-level pre-tokenizer cuts
/// anyway, so the ids equal those of encoding the whole text at once.
pub fn encode_stream(
    tok: &Tokenizer,
    mut reader: impl Read,
    allow_special: bool,
    chunk: usize,
) -> anyhow::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut block = vec![0u8; chunk.max(1)];
    let mut offset = 0usize;
    loop {
        let n = reader.read(&mut block).context("reading text from stdin")?;
        buf.extend_from_slice(&block[..n]);
        let cut = if n == 0 {
            Some(buf.len())
        } else if buf.len() >= chunk {
            safe_cut(&buf)
        } else {
            None
        };
        if let Some(cut) = cut {
            let text = std::str::from_utf8(&buf[..cut]).map_err(|e| {
                anyhow::anyhow!(
                    "stdin is not UTF-8: invalid byte at offset {}",
                    offset + e.valid_up_to()
                )
            })?;
            ids.extend(encode(tok, text, allow_special)?);
            buf.drain(..cut);
            offset += cut;
        }
        if n == 0 {
            return Ok(ids);
        }
    }
}

/// The last position in `text` where GPT-2's pre-tokenizer regex always splits: after a newline followed by a
/// character that is not whitespace, or before a single space between two non-whitespace characters (the
/// space starts the next word's pre-token). Such a cut never splits a special token (they hold neither).
fn safe_cut(text: &[u8]) -> Option<usize> {
    let ws = |b: u8| b.is_ascii_whitespace();
    // Only ASCII bytes are tested, so a cut always lands on a UTF-8 boundary.
    (1..text.len().saturating_sub(1)).rev().find(|&i| {
        let (prev, here, next) = (text[i - 1], text[i], text[i + 1]);
        (prev == b'\n' && !ws(here) && here.is_ascii() && here != b' ')
            || (here == b' ' && !ws(prev) && !ws(next) && prev.is_ascii())
    })
}

/// `{"ids":[...],"tokens":[...]}` and a newline; tokens are each token's
/// bytes as lossy UTF-8.
pub fn format_json(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut out = Vec::new();
    write_json(&mut out, tok, ids).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`format_json`] written piece by piece, without building the whole text.
pub fn write_json(w: &mut impl Write, tok: &Tokenizer, ids: &[u32]) -> std::io::Result<()> {
    w.write_all(b"{\"ids\":")?;
    serde_json::to_writer(&mut *w, ids)?;
    w.write_all(b",\"tokens\":[")?;
    for (i, &id) in ids.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, &tok.token_display(id))?;
    }
    w.write_all(b"]}\n")
}

/// A table with one row per token: index, id and the token quoted with
/// escapes (`"\n"`, `" in"`).
pub fn format_table(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut out = Vec::new();
    write_table(&mut out, tok, ids).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("the table is UTF-8")
}

/// [`format_table`] written row by row.
pub fn write_table(w: &mut impl Write, tok: &Tokenizer, ids: &[u32]) -> std::io::Result<()> {
    let idx_w = ids.len().saturating_sub(1).to_string().len().max(3);
    let id_w = tok.vocab_size().saturating_sub(1).to_string().len().max(2);
    writeln!(w, "{:>idx_w$}  {:>id_w$}  token", "idx", "id")?;
    for (i, &id) in ids.iter().enumerate() {
        writeln!(
            w,
            "{i:>idx_w$}  {id:>id_w$}  \"{}\"",
            escape_token(&tok.token_display(id))
        )?;
    }
    Ok(())
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
