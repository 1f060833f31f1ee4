//! `circuitscope run`: one forward pass with the top next tokens, channel magnitudes, hook summaries,
//! interventions, and an optional safetensors dump of everything recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use serde_json::json;

use super::common::{
    load_model, matching_hooks, parse_hook_channels, print_json, resolve_tokenizer, token_text, HookChannel,
};
use crate::model::{checkpoint, Action, Gpt, Hooks, Intervention, LoadOptions, Stored};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model directory (config.json + model.safetensors, or beeg_config.json + final_model.pt).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub checks: super::common::LoadChecks,
    /// Prompt text (tokenized with the model's tokenizer.json or --tokenizer).
    #[arg(long, conflicts_with = "tokens")]
    pub prompt: Option<String>,
    /// Explicit token ids instead of a prompt, e.g. 5,17,2.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// tokenizer.json to use instead of the model directory's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How many next-token candidates to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Record every hook whose name starts with a match of this regex (e.g. `.*`, `1\.mlp`, `final_resid`) and
    /// print a summary of each at the last token.
    #[arg(long)]
    pub hooks: Option<String>,
    /// Channels to print, comma-separated: HOOK[i] or HOOK[i:j], e.g. 0.attn.q[3],1.mlp.post_act[0:4].
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
    /// Print channel values at every token instead of the last one.
    #[arg(long)]
    pub per_token: bool,
    /// Interventions: HOOK[i]=VALUE sets a channel, HOOK[i]*=FACTOR scales it; add @POS after the bracket to
    /// touch one position only (negative counts from the end), e.g. 1.mlp.post_act[7]@-1=0.
    #[arg(long, num_args = 1..)]
    pub intervene: Vec<String>,
    /// Keep the last block_size tokens of a prompt that is too long instead of refusing it.
    #[arg(long)]
    pub truncate: bool,
    /// Write logits and every recorded hook to this safetensors file (`logits`, `hook.<name>`, positions x width).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Use dense matmul for every matrix (default: CSR kernel below density 0.25).
    #[arg(long)]
    pub dense: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A parsed `--intervene` item.
#[derive(Debug, Clone, PartialEq)]
pub struct InterventionSpec {
    pub target: HookChannel,
    pub position: Option<i64>,
    pub scale: bool,
    pub value: f32,
}

impl InterventionSpec {
    pub fn parse(spec: &str, model: &Gpt) -> Result<Self> {
        let (lhs, rhs, scale) = if let Some((l, r)) = spec.split_once("*=") {
            (l, r, true)
        } else if let Some((l, r)) = spec.split_once('=') {
            (l, r, false)
        } else {
            bail!("--intervene `{spec}`: expected HOOK[i]=VALUE or HOOK[i]*=FACTOR");
        };
        let (target, position) = match lhs.rsplit_once('@') {
            Some((t, p)) => (
                t,
                Some(
                    p.trim()
                        .parse::<i64>()
                        .with_context(|| format!("--intervene `{spec}`: bad position `{p}`"))?,
                ),
            ),
            None => (lhs, None),
        };
        let mut chans = parse_hook_channels(target, model).with_context(|| format!("--intervene `{spec}`"))?;
        if chans.len() != 1 {
            bail!("--intervene `{spec}`: give one channel per intervention");
        }
        let value: f32 = rhs
            .trim()
            .parse()
            .with_context(|| format!("--intervene `{spec}`: `{rhs}` is not a number"))?;
        if !value.is_finite() {
            bail!("--intervene `{spec}`: the value must be finite, not {value}");
        }
        Ok(InterventionSpec {
            target: chans.remove(0),
            position,
            scale,
            value,
        })
    }

    pub fn to_intervention(&self) -> Intervention {
        let action = if self.scale {
            Action::Scale(self.value)
        } else {
            Action::Set(self.value)
        };
        let iv = Intervention::new(action).channels(vec![self.target.channel]);
        match self.position {
            Some(p) => iv.positions(vec![p]),
            None => iv,
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let opts = if args.dense {
        LoadOptions::ALL_DENSE
    } else {
        LoadOptions::default()
    };
    let model = load_model(&args.model, args.checks.apply(opts))?;
    let tok = resolve_tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let mut ids = match (&args.prompt, &args.tokens) {
        (Some(p), _) => {
            let Some(t) = &tok else {
                bail!(
                    "{}: no tokenizer.json beside the model; pass --tokenizer FILE or use --tokens",
                    args.model.display()
                );
            };
            t.encode(p)?
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --prompt TEXT or --tokens IDS"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let block = model.config.block_size;
    if ids.len() > block {
        if !args.truncate {
            bail!(
                "the prompt has {} tokens but the model's context is {block}; shorten it or pass --truncate",
                ids.len()
            );
        }
        ids.drain(..ids.len() - block);
    }
    model.check_tokens(&ids)?;

    let mut channels = Vec::new();
    for spec in &args.channels {
        channels.extend(parse_hook_channels(spec, &model)?);
    }
    let ivs = args
        .intervene
        .iter()
        .map(|s| InterventionSpec::parse(s, &model))
        .collect::<Result<Vec<_>>>()?;

    if let Some(h) = &args.hooks {
        if let Err(e) = regex::Regex::new(h) {
            // The regex error spans several lines (pattern, caret, reason); keep the reason.
            let msg = e.to_string();
            let reason = msg.lines().last().unwrap_or(&msg).trim().trim_start_matches("error: ");
            bail!("--hooks `{h}`: invalid regex: {reason}");
        }
    }
    let mut hooks = Hooks::none();
    let hook_names: Vec<String> = match &args.hooks {
        Some(h) => matching_hooks(h, &model)?,
        None => vec![],
    };
    let pattern: Vec<String> = channels
        .iter()
        .map(|c| &c.hook)
        .chain(&hook_names)
        .map(|h| regex::escape(h) + "$")
        .collect();
    if !pattern.is_empty() {
        hooks.set_record(&pattern.join("|"))?;
    }
    for iv in &ivs {
        hooks.intervene(&iv.target.hook, iv.to_intervention());
    }
    let logits = model.forward_ids(&ids, &mut hooks)?; // (T, V)
    let t = ids.len();
    let last = logits.get(t - 1)?;
    let probs = candle_nn::ops::softmax_last_dim(&last)?;
    let last_values = last.to_vec1::<f32>()?;
    let non_finite = last_values.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        // Flagged, not hidden: with --allow-nonfinite this is what the user asked to see.
        eprintln!(
            "warning: {non_finite} of the last position's logits are NaN or infinite; probabilities are meaningless"
        );
    }
    let top = top_k(&last_values, &probs.to_vec1::<f32>()?, args.top);

    let positions: Vec<usize> = if args.per_token { (0..t).collect() } else { vec![t - 1] };
    let mut channel_rows = Vec::new();
    for c in &channels {
        let act = hooks
            .recorded
            .get(&c.hook)
            .context("hook was not recorded")?
            .squeeze(0)?; // (T, W)
        let col: Vec<f32> = act.narrow(1, c.channel, 1)?.squeeze(1)?.to_vec1()?;
        channel_rows.push((c.to_string(), positions.iter().map(|&p| col[p]).collect::<Vec<f32>>()));
    }
    let mut hook_rows = Vec::new();
    for name in &hook_names {
        let act = hooks.recorded[name].squeeze(0)?.get(t - 1)?; // (W)
        hook_rows.push((name.clone(), HookSummary::of(&act.to_vec1()?)));
    }

    if let Some(path) = &args.dump {
        dump(path, &logits, &hooks.recorded)?;
    }

    if args.json {
        let out = json!({
            "tokens": ids.iter().enumerate().map(|(i, &id)| json!({"position": i, "id": id, "text": token_text(tok.as_ref(), id)})).collect::<Vec<_>>(),
            "top": top.iter().map(|&(id, logit, prob)| json!({"id": id, "token": token_text(tok.as_ref(), id), "prob": prob, "logit": logit})).collect::<Vec<_>>(),
            "positions": positions,
            "channels": channel_rows.iter().map(|(id, v)| json!({"id": id, "values": v})).collect::<Vec<_>>(),
            "hooks": hook_rows.iter().map(|(n, s)| json!({"name": n, "width": s.width, "nonzero": s.nonzero, "l2": s.l2, "top": s.top.iter().map(|&(c, v)| json!([c, v])).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "interventions": args.intervene,
            "dump": args.dump.as_ref().map(|p| p.display().to_string()),
        });
        return print_json(&out);
    }
    let shown: Vec<String> = ids.iter().map(|&id| token_text(tok.as_ref(), id)).collect();
    println!(
        "{} tokens: {}",
        t,
        shown.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ")
    );
    if !ivs.is_empty() {
        println!("interventions: {}", args.intervene.join(", "));
    }
    println!("\nnext token after {:?}:", shown[t - 1]);
    println!("  {:>4}  {:>8}  {:>9}  {:>8}  token", "rank", "id", "prob", "logit");
    for (rank, &(id, logit, prob)) in top.iter().enumerate() {
        println!(
            "  {:>4}  {:>8}  {:>9.5}  {:>8.3}  {:?}",
            rank + 1,
            id,
            prob,
            logit,
            token_text(tok.as_ref(), id)
        );
    }
    if !channel_rows.is_empty() {
        println!("\nchannels{}:", if args.per_token { "" } else { " at the last token" });
        if args.per_token {
            print!("  {:<28}", "channel");
            for p in &positions {
                print!(" {:>8}", p);
            }
            println!();
        }
        for (id, vals) in &channel_rows {
            print!("  {id:<28}");
            for v in vals {
                print!(" {v:>8.4}");
            }
            println!();
        }
    }
    if !hook_rows.is_empty() {
        println!("\nhooks at the last token (width, nonzero, L2, largest |value| channels):");
        for (name, s) in &hook_rows {
            let tops: Vec<String> = s.top.iter().map(|(c, v)| format!("[{c}]={v:.3}")).collect();
            println!(
                "  {name:<20} {:>6} {:>6} {:>9.4}  {}",
                s.width,
                s.nonzero,
                s.l2,
                tops.join(" ")
            );
        }
    }
    if let Some(p) = &args.dump {
        println!("\nwrote {}", p.display());
    }
    Ok(())
}

/// (id, logit, prob) of the k most probable tokens.
pub fn top_k(logits: &[f32], probs: &[f32], k: usize) -> Vec<(u32, f32, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| (i as u32, logits[i], probs[i]))
        .collect()
}

pub struct HookSummary {
    pub width: usize,
    pub nonzero: usize,
    pub l2: f32,
    /// The five largest-|value| channels.
    pub top: Vec<(usize, f32)>,
}

impl HookSummary {
    pub fn of(v: &[f32]) -> Self {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()).then(a.cmp(&b)));
        HookSummary {
            width: v.len(),
            nonzero: v.iter().filter(|x| **x != 0.0).count(),
            l2: v.iter().map(|x| x * x).sum::<f32>().sqrt(),
            top: idx
                .into_iter()
                .take(5)
                .filter(|&i| v[i] != 0.0)
                .map(|i| (i, v[i]))
                .collect(),
        }
    }
}

/// Writes `logits` (T, V) and `hook.<name>` (T, W) for a single-sequence run.
fn dump(path: &std::path::Path, logits: &Tensor, recorded: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut tensors = BTreeMap::new();
    tensors.insert("logits".to_string(), Stored::Dense(logits.to_dtype(DType::F32)?));
    for (name, t) in recorded {
        let t = if t.rank() == 3 { t.squeeze(0)? } else { t.clone() };
        tensors.insert(format!("hook.{name}"), Stored::Dense(t));
    }
    checkpoint::write_safetensors(path, &tensors, &[("content".into(), "circuitscope run dump".into())])
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
