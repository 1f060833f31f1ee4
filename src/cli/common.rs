//! Pieces shared by the subcommands: model/tokenizer resolution, channel specs and output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::circuit::node_id::split_indexed;
use crate::model::{Gpt, LoadOptions, ModelFiles};
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

/// Parses `HOOK[i]` or `HOOK[i:j]` (a range) into channels, checking the hook exists and the index fits.
pub fn parse_hook_channels(spec: &str, model: &Gpt) -> Result<Vec<HookChannel>> {
    let (hook, idx) =
        split_indexed(spec.trim()).with_context(|| format!("`{spec}`: expected HOOK[INDEX], e.g. 0.attn.q[3]"))?;
    let points = model.hook_points();
    let Some((_, width)) = points.iter().find(|(h, _)| h == hook) else {
        bail!(
            "`{spec}`: unknown hook `{hook}`; hooks are like 0.attn.q, 1.mlp.post_act, final_resid (layers 0..{})",
            model.config.n_layer
        );
    };
    let range = match idx.split_once(':') {
        Some((a, b)) => {
            let a: usize = a.parse().with_context(|| format!("`{spec}`: bad range start"))?;
            let b: usize = b.parse().with_context(|| format!("`{spec}`: bad range end"))?;
            a..b
        }
        None => {
            let i: usize = idx
                .parse()
                .with_context(|| format!("`{spec}`: index is not a number"))?;
            i..i + 1
        }
    };
    if range.is_empty() || range.end > *width {
        bail!("`{spec}`: channel out of range; `{hook}` has {width} channels");
    }
    Ok(range
        .map(|channel| HookChannel {
            hook: hook.to_string(),
            channel,
        })
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
