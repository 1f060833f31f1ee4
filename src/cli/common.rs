//! Pieces shared by the subcommands: model/tokenizer resolution, channel specs and output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::circuit::node_id::split_indexed;
use crate::model::{Gpt, HookName, LoadOptions, ModelFiles};
use crate::tokenize::Tokenizer;

/// The opt-outs of the load-time checks, shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct LoadChecks {
    /// Load even when the checkpoint holds tensors the config does not use (extra layers, sink logits with
    /// `sink: false`, ...): they become warnings instead of an error.
    #[arg(long)]
    pub allow_extra: bool,
    /// Load even when weights hold NaN or infinite values (for research on broken checkpoints): a warning
    /// instead of an error.
    #[arg(long)]
    pub allow_nonfinite: bool,
}

impl LoadChecks {
    /// `opts` with these opt-outs.
    pub fn apply(self, opts: LoadOptions) -> LoadOptions {
        LoadOptions {
            allow_extra: self.allow_extra,
            allow_nonfinite: self.allow_nonfinite,
            ..opts
        }
    }
}

/// Loads a model, printing config warnings to stderr.
pub fn load_model(path: &Path, opts: LoadOptions) -> Result<Gpt> {
    let (model, warnings) = Gpt::load(path, opts)?;
    for w in warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(model)
}

/// The tokenizer given explicitly, else the model directory's tokenizer.json.
pub fn resolve_tokenizer(explicit: Option<&Path>, model: &Path) -> Result<Option<Tokenizer>> {
    let path: Option<PathBuf> = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => ModelFiles::locate(model).ok().and_then(|f| f.tokenizer),
    };
    match path {
        Some(p) => Ok(Some(Tokenizer::load(&p)?)),
        None => Ok(None),
    }
}

/// A token's text for display: the tokenizer's, else `<id>`.
pub fn token_text(tok: Option<&Tokenizer>, id: u32) -> String {
    match tok {
        Some(t) => t.token_display(id),
        None => format!("<{id}>"),
    }
}

/// One hook channel, `HOOK[i]`, validated against the model's hook points.
#[derive(Debug, Clone, PartialEq)]
pub struct HookChannel {
    /// The hook name.
    pub hook: String,
    /// The channel index.
    pub channel: usize,
}

impl std::fmt::Display for HookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.hook, self.channel)
    }
}

/// Parses `HOOK[i]` or `HOOK[i:j]` (a range) into channels, checking the hook exists and the index fits. HOOK
/// may be spelled the TransformerLens way (`blocks.0.attn.hook_q`); then, at q, k, v and z, `[h:c]` is head h's
/// channel c (TransformerLens's `[head, d_head]` indexing) rather than a range.
pub fn parse_hook_channels(spec: &str, model: &Gpt) -> Result<Vec<HookChannel>> {
    let (given, idx) =
        split_indexed(spec.trim()).with_context(|| format!("`{spec}`: expected HOOK[INDEX], e.g. 0.attn.q[3]"))?;
    let cfg = &model.config;
    let name = HookName::parse_any(given, cfg.n_layer).ok();
    let hook = name.map_or_else(|| given.to_string(), |n| n.to_string());
    let transformer_lens = hook != given;
    let points = model.hook_points();
    let Some((_, width)) = points.iter().find(|(h, _)| *h == hook) else {
        bail!(
            "`{spec}`: unknown hook `{given}`; hooks are like 0.attn.q, 1.mlp.post_act, final_resid or \
             TransformerLens's blocks.0.attn.hook_q (layers 0..{})",
            cfg.n_layer
        );
    };
    let number = |s: &str, what: &str| -> Result<usize> {
        s.trim()
            .parse()
            .with_context(|| format!("`{spec}`: {what} `{s}` is not a number"))
    };
    let range = match idx.split_once(':') {
        Some((h, c)) if transformer_lens && name.is_some_and(HookName::is_per_head) => {
            let (h, c) = (number(h, "head")?, number(c, "channel")?);
            if h >= cfg.n_head || c >= cfg.d_head {
                bail!(
                    "`{spec}`: head {h} channel {c} is out of range; `{given}` has {} heads of {} channels",
                    cfg.n_head,
                    cfg.d_head
                );
            }
            let i = h * cfg.d_head + c;
            i..i + 1
        }
        Some((a, b)) => number(a, "range start")?..number(b, "range end")?,
        None => {
            let i = number(idx, "index")?;
            i..i + 1
        }
    };
    if range.is_empty() || range.end > *width {
        bail!("`{spec}`: channel out of range; `{given}` has {width} channels");
    }
    Ok(range
        .map(|channel| HookChannel {
            hook: hook.clone(),
            channel,
        })
        .collect())
}

/// The hook points of `model` whose name, in our spelling or TransformerLens's, matches `pattern` at its start.
pub fn matching_hooks(pattern: &str, model: &Gpt) -> Result<Vec<String>> {
    let re = regex::Regex::new(&format!("^(?:{pattern})"))?;
    let n_layer = model.config.n_layer;
    Ok(HookName::all(n_layer)
        .filter(|h| re.is_match(&h.to_string()) || re.is_match(&h.transformer_lens(n_layer)))
        .map(|h| h.to_string())
        .collect())
}

/// Parses a density given as a decimal or a fraction (`0.0039`, `1/256`).
pub fn parse_density(s: &str) -> std::result::Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| format!("bad numerator in `{s}`"))?;
            let b: f64 = b.trim().parse().map_err(|_| format!("bad denominator in `{s}`"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number or fraction"))?,
    };
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("density {v} must be in (0, 1]"));
    }
    Ok(v)
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
