//! `run --sae DIR --steer FEATURE=SCALE[@POS]` and `run --generate N`: adding SAE decoder directions at their
//! hook, the change in the next-token distribution, and text generated with and without the steering.

use anyhow::{bail, Context, Result};
use circuitscope_kernels::rng::SplitMix64;
use serde_json::{json, Value};

use super::common::token_text;
use crate::analysis::sae::Sae;
use crate::model::{Action, Gpt, Hooks, Intervention};
use crate::tokenize::Tokenizer;

/// One parsed `--steer` item.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerSpec {
    /// The latent whose decoder direction is added.
    pub feature: usize,
    /// Its multiple.
    pub scale: f32,
    /// The position (negative: from the end); `None`: every position.
    pub position: Option<i64>,
}

impl SteerSpec {
    /// Parses `FEATURE=SCALE[@POS]` (FEATURE a latent index of `sae`; `@POS` may also follow FEATURE).
    pub fn parse(spec: &str, sae: &Sae) -> Result<Self> {
        let Some((lhs, rhs)) = spec.split_once('=') else {
            bail!("--steer `{spec}`: expected FEATURE=SCALE or FEATURE=SCALE@POS, e.g. 123=8@-1");
        };
        let (feature, pos_l) = match lhs.split_once('@') {
            Some((f, p)) => (f, Some(p)),
            None => (lhs, None),
        };
        let (scale, pos_r) = match rhs.split_once('@') {
            Some((s, p)) => (s, Some(p)),
            None => (rhs, None),
        };
        let feature: usize = feature
            .trim()
            .parse()
            .with_context(|| format!("--steer `{spec}`: feature `{feature}` is not a latent index"))?;
        let n = sae.config.n_latents;
        if feature >= n {
            bail!("--steer `{spec}`: feature {feature} is out of range; the SAE has {n} latents");
        }
        let scale: f32 = scale
            .trim()
            .parse()
            .with_context(|| format!("--steer `{spec}`: scale `{scale}` is not a number"))?;
        if !scale.is_finite() {
            bail!("--steer `{spec}`: the scale must be finite");
        }
        let position = match pos_l.or(pos_r) {
            Some(p) => Some(
                p.trim()
                    .parse::<i64>()
                    .with_context(|| format!("--steer `{spec}`: bad position `{p}`"))?,
            ),
            None => None,
        };
        Ok(SteerSpec {
            feature,
            scale,
            position,
        })
    }

    /// The intervention at the SAE's hook: SCALE · W_dec[:, FEATURE] added.
    pub fn intervention(&self, sae: &Sae) -> Result<Intervention> {
        let dir: Vec<f32> = sae
            .decoder_direction(self.feature)?
            .into_iter()
            .map(|v| v * self.scale)
            .collect();
        let iv = Intervention::new(Action::Add(dir));
        Ok(match self.position {
            Some(p) => iv.positions(vec![p]),
            None => iv,
        })
    }
}

/// Forward passes of one prompt under a fixed set of interventions.
pub struct Runner<'a> {
    /// The model.
    pub model: &'a Gpt,
    /// (hook, intervention) applied at every forward.
    pub interventions: Vec<(String, Intervention)>,
}

impl Runner<'_> {
    /// Next-token probabilities after `ids` (the last `block_size` of them).
    pub fn next_probs(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let block = self.model.config.block_size;
        let ids = &ids[ids.len().saturating_sub(block)..];
        let mut hooks = Hooks::none();
        for (h, iv) in &self.interventions {
            hooks.intervene(h, iv.clone());
        }
        let logits = self.model.forward_ids(ids, &mut hooks)?; // (T, V)
        let last = logits.get(ids.len() - 1)?;
        Ok(candle_nn::ops::softmax_last_dim(&last)?.to_vec1()?)
    }

    /// `n` tokens after `ids`: greedy, or sampled at `temperature` from a generator seeded with `seed`.
    pub fn generate(&self, ids: &[u32], n: usize, seed: Option<u64>, temperature: f32) -> Result<Vec<u32>> {
        let mut seq = ids.to_vec();
        let mut rng = seed.map(SplitMix64::new);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let probs = self.next_probs(&seq)?;
            let next = match rng.as_mut() {
                None => argmax(&probs),
                Some(r) => sample(&probs, temperature, r),
            };
            seq.push(next);
            out.push(next);
        }
        Ok(out)
    }
}

fn argmax(p: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws from p^(1/temperature), renormalised.
fn sample(p: &[f32], temperature: f32, rng: &mut SplitMix64) -> u32 {
    let w: Vec<f64> = p
        .iter()
        .map(|&x| {
            if x > 0.0 {
                (x as f64).powf(1.0 / temperature as f64)
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = w.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return argmax(p);
    }
    let mut u = rng.next_f64() * total;
    for (i, x) in w.iter().enumerate() {
        if u < *x {
            return i as u32;
        }
        u -= x;
    }
    argmax(p)
}

/// The next-token distribution before and after steering: KL and the tokens whose probability moved most.
pub struct DistributionChange {
    /// KL(before ‖ after), nats.
    pub kl: f64,
    /// (token, p before, p after), largest |change| first.
    pub moved: Vec<(u32, f32, f32)>,
}

impl DistributionChange {
    /// Compares two next-token distributions, keeping the `top` most moved tokens.
    pub fn of(before: &[f32], after: &[f32], top: usize) -> Self {
        let kl = before
            .iter()
            .zip(after)
            .filter(|(p, _)| **p > 0.0)
            .map(|(&p, &q)| p as f64 * ((p as f64).ln() - (q.max(1e-30) as f64).ln()))
            .sum();
        let mut idx: Vec<usize> = (0..before.len()).collect();
        idx.sort_by(|&a, &b| {
            let d = |i: usize| (after[i] - before[i]).abs();
            d(b).total_cmp(&d(a)).then(a.cmp(&b))
        });
        DistributionChange {
            kl,
            moved: idx
                .into_iter()
                .take(top)
                .map(|i| (i as u32, before[i], after[i]))
                .collect(),
        }
    }

    /// As JSON.
    pub fn json(&self, tok: Option<&Tokenizer>) -> Value {
        json!({
            "kl": self.kl,
            "moved": self.moved.iter().map(|&(id, b, a)| json!({"id": id, "token": token_text(tok, id), "before": b, "after": a, "delta": a - b})).collect::<Vec<_>>(),
        })
    }

    /// As text lines.
    pub fn render(&self, tok: Option<&Tokenizer>) -> String {
        let mut out = format!(
            "next-token change (KL(before ‖ after) = {:.4} nats), most moved tokens:\n  {:>8}  {:>9}  {:>9}  {:>9}  token\n",
            self.kl, "id", "before", "after", "Δ"
        );
        for &(id, b, a) in &self.moved {
            out.push_str(&format!(
                "  {id:>8}  {b:>9.5}  {a:>9.5}  {:>+9.5}  {:?}\n",
                a - b,
                token_text(tok, id)
            ));
        }
        out
    }
}

/// Token ids as text (the tokenizer's decoding, else the ids).
pub fn text_of(ids: &[u32], tok: Option<&Tokenizer>) -> String {
    match tok {
        Some(t) => t.decode(ids),
        None => ids.iter().map(|i| format!("<{i}>")).collect::<Vec<_>>().join(""),
    }
}

/// What `--steer` and `--generate` add to `run`'s output.
pub struct SteerReport {
    /// The SAE's hook, when steering.
    pub hook: Option<String>,
    /// The next-token change that the steering makes (None without --steer).
    pub change: Option<DistributionChange>,
    /// Tokens generated with every intervention and the steering.
    pub generated: Option<Vec<u32>>,
    /// Tokens generated without the steering (with --steer and --generate only).
    pub baseline: Option<Vec<u32>>,
}

/// The steering interventions of `run --sae DIR --steer ...` as (hook, intervention), with the SAE's hook.
pub fn steering(args: &super::run::RunArgs, model: &Gpt) -> Result<Vec<(String, Intervention)>> {
    if args.steer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = &args.sae else {
        bail!("--steer adds an SAE latent's decoder direction: name the SAE with --sae DIR");
    };
    let sae = super::sae::load_sae(dir, &args.model, model)?;
    let hook = sae.hook().to_string();
    args.steer
        .iter()
        .map(|s| Ok((hook.clone(), SteerSpec::parse(s, &sae)?.intervention(&sae)?)))
        .collect()
}

/// The distribution change and the generations of `run`, when asked for.
pub fn report(
    args: &super::run::RunArgs,
    model: &Gpt,
    ids: &[u32],
    base: &[(String, Intervention)],
    steer: &[(String, Intervention)],
) -> Result<Option<SteerReport>> {
    if steer.is_empty() && args.generate.is_none() {
        if args.seed.is_some() {
            bail!("--seed samples the tokens of --generate N; give --generate too");
        }
        return Ok(None);
    }
    if !(args.temperature > 0.0 && args.temperature.is_finite()) {
        bail!("--temperature {} must be positive", args.temperature);
    }
    let plain = Runner {
        model,
        interventions: base.to_vec(),
    };
    let steered = Runner {
        model,
        interventions: base.iter().chain(steer).cloned().collect(),
    };
    let change = if steer.is_empty() {
        None
    } else {
        Some(DistributionChange::of(
            &plain.next_probs(ids)?,
            &steered.next_probs(ids)?,
            args.top,
        ))
    };
    let (generated, baseline) = match args.generate {
        Some(n) => {
            let g = steered.generate(ids, n, args.seed, args.temperature)?;
            let b = if steer.is_empty() {
                None
            } else {
                Some(plain.generate(ids, n, args.seed, args.temperature)?)
            };
            (Some(g), b)
        }
        None => (None, None),
    };
    Ok(Some(SteerReport {
        hook: steer.first().map(|(h, _)| h.clone()),
        change,
        generated,
        baseline,
    }))
}

impl SteerReport {
    /// As JSON (`steer` and `generated` keys of `run --json`).
    pub fn json(&self, args: &super::run::RunArgs, tok: Option<&Tokenizer>) -> Value {
        let gen = |ids: &Option<Vec<u32>>| ids.as_ref().map(|ids| json!({"ids": ids, "text": text_of(ids, tok)}));
        json!({
            "sae": args.sae.as_ref().map(|p| p.display().to_string()),
            "hook": self.hook,
            "steer": args.steer,
            "change": self.change.as_ref().map(|c| c.json(tok)),
            "generated": gen(&self.generated),
            "baseline": gen(&self.baseline),
            "seed": args.seed,
            "temperature": args.seed.map(|_| args.temperature),
        })
    }

    /// As text, after `run`'s other output.
    pub fn render(&self, args: &super::run::RunArgs, tok: Option<&Tokenizer>) -> String {
        let mut out = String::new();
        if let (Some(c), Some(h)) = (&self.change, &self.hook) {
            out.push_str(&format!("\nsteering at {h}: {}\n", args.steer.join(", ")));
            out.push_str(&c.render(tok));
        }
        let how = match args.seed {
            Some(s) => format!("sampled, seed {s}, temperature {}", args.temperature),
            None => "greedy".into(),
        };
        if let Some(g) = &self.generated {
            let label = if self.change.is_some() {
                "with steering"
            } else {
                "generated"
            };
            out.push_str(&format!(
                "\n{label} ({} tokens, {how}): {:?}\n",
                g.len(),
                text_of(g, tok)
            ));
        }
        if let Some(b) = &self.baseline {
            out.push_str(&format!(
                "without steering ({} tokens, {how}): {:?}\n",
                b.len(),
                text_of(b, tok)
            ));
        }
        out
    }
}
