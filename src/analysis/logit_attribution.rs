//! Direct logit attribution on one token or a token pair: how much of logit(A) (or logit(A) − logit(B)) at the
//! last position each component writes straight into it (the embedding, every head's attention output, every MLP, the bigram table;
//! and single circuit nodes), with the final norm's scale frozen at its value on this prompt, as
//! TransformerLens's `apply_ln_to_stack` does.
//!
//! With the scale frozen the path from the residual stream to the logit difference is linear: a residual vector
//! `c` adds `s · c·r`, where `s` is the norm's scale on the final residual and `r = w ⊙ (U_A − U_B)` (centred
//! for LayerNorm). The residual is the embedding plus every sublayer's write, so the rows sum to the logit
//! difference up to the unembedding bias. A sublayer's AbsTopK keeps some output channels and zeroes the rest;
//! its mask is frozen too (read from the recorded write), so that each head's share is what it wrote into the
//! kept channels.

use std::collections::BTreeMap;

use super::recording::Recorded;
use crate::circuit::{NodeId, Site};
use crate::model::readout::{OutProjection, Sublayer};
use crate::model::{Gpt, HookName, HookSite, ModelError};

/// Why an attribution could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// Reading the model's weights failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The residual stream is not a sum of writes, so no write has a direct effect of its own.
    #[error("direct logit attribution needs a plain residual stream, but {0}")]
    NonlinearResidual(&'static str),
    /// A hook the attribution reads was not recorded (record [`record_pattern`]).
    #[error("the run did not record `{0}` (record logit_attribution::record_pattern)")]
    NotRecorded(String),
}

type Result<T> = std::result::Result<T, AttributionError>;

/// What kind of component a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// The token and position embeddings (`0.resid_in`).
    Embedding,
    /// The bigram table's entries for the last token (added to the logits directly, past the norm).
    BigramTable,
    /// One head's share of an attention output.
    AttnHead,
    /// The attention output projection's bias (in the channels AbsTopK kept).
    AttnBias,
    /// What an intervention on a sublayer's write changed beyond its heads and bias.
    SublayerEdit,
    /// An MLP's whole output.
    Mlp,
    /// The final LayerNorm's bias.
    NormBias,
    /// What interventions on the residual stream itself (`resid_in`, `resid_mid`, `final_resid`) added.
    ResidualEdit,
}

/// One row of a decomposition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Component {
    /// What the row is, e.g. `embedding`, `0.attn.h3`, `0.attn bias`, `1.mlp`.
    pub name: String,
    /// Its kind.
    pub kind: ComponentKind,
    /// The block, where it belongs to one.
    pub layer: Option<usize>,
    /// The head, for head rows.
    pub head: Option<usize>,
    /// Its direct contribution to logit(A) − logit(B).
    pub value: f32,
}

/// logit(A) − logit(B) (or logit(A) alone) at the last position and its decomposition.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decomposition {
    /// Token A.
    pub a: u32,
    /// Token B; None when the logit of A alone is decomposed.
    pub b: Option<u32>,
    /// logit(A) at the last position, as the forward pass computed it.
    pub logit_a: f32,
    /// logit(B) likewise (None without B).
    pub logit_b: Option<f32>,
    /// What is decomposed: logit(A) − logit(B), or logit(A) without B.
    pub logit_diff: f32,
    /// The unembedding bias's share, `final_logits_bias[A] − final_logits_bias[B]` (or `final_logits_bias[A]`):
    /// the one part no row holds.
    pub unembed_bias: f32,
    /// The final norm's scale on this prompt's last residual (frozen for the decomposition).
    pub norm_scale: f32,
    /// The rows, in forward order; they sum to `logit_diff − unembed_bias`.
    pub components: Vec<Component>,
}

/// The hooks every attribution reads: the embedding, each block's attention output (before the projection),
/// both writes and the MLP's neurons, and the final residual.
pub fn hooks_read(n_layer: usize) -> Vec<String> {
    let mut out = vec![HookName::block(0, HookSite::ResidIn).to_string()];
    for l in 0..n_layer {
        for site in [
            HookSite::AttnY,
            HookSite::AttnResidDelta,
            HookSite::MlpPostAct,
            HookSite::MlpResidDelta,
        ] {
            out.push(HookName::block(l, site).to_string());
        }
    }
    out.push(HookName::FinalResid.to_string());
    out
}

/// The recording pattern ([`crate::model::Hooks::recording`]) of [`hooks_read`].
pub fn record_pattern(n_layer: usize) -> String {
    hooks_read(n_layer)
        .iter()
        .map(|h| format!("{}$", regex::escape(h)))
        .collect::<Vec<_>>()
        .join("|")
}

/// What the attribution needs of the model for one token pair, read once.
pub struct Readout {
    /// Token A.
    pub a: u32,
    /// Token B (None: the logit of A alone).
    pub b: Option<u32>,
    /// (D) the residual direction before the norm's scale: w ⊙ (U_A − U_B) (or w ⊙ U_A), centred for LayerNorm.
    read: Vec<f32>,
    /// The final norm's scale as a function of the final residual.
    norm: crate::model::readout::FinalNorm,
    /// The final LayerNorm bias · (U_A − U_B) (zero without one).
    norm_bias: Option<f32>,
    unembed_bias: f32,
    n_head: usize,
    d_head: usize,
    attn_out: Vec<OutProjection>,
    mlp_out: Vec<OutProjection>,
    /// (V) the bigram table's logit(A) − logit(B) (or logit(A)) after each token, when the model has a table.
    bigram: Option<Vec<f32>>,
}

/// The per-prompt quantities: the norm's scale and each sublayer's output columns read through its frozen mask.
struct Frame {
    scale: f32,
    /// Per layer: (A) Σ_d kept_d · W_O[d, j] · r_d for each attention output channel j.
    attn_cols: Vec<Vec<f32>>,
    /// Per layer: (F) the same for each neuron through the MLP's output projection.
    mlp_cols: Vec<Vec<f32>>,
}

/// Row `pos` of a recorded hook.
fn row<'a>(rec: &'a Recorded, hook: &str, pos: usize) -> Result<&'a [f32]> {
    let (w, v) = rec
        .hooks
        .get(hook)
        .ok_or_else(|| AttributionError::NotRecorded(hook.to_string()))?;
    v.get(pos * w..(pos + 1) * w)
        .ok_or_else(|| AttributionError::NotRecorded(format!("{hook} at position {pos}")))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum::<f64>() as f32
}

impl Readout {
    /// The readout of `model` for logit(a) − logit(b).
    pub fn new(model: &Gpt, a: u32, b: u32) -> Result<Readout> {
        Readout::of(model, a, Some(b))
    }

    /// The readout of `model` for logit(a) alone (`b` None) or logit(a) − logit(b).
    pub fn of(model: &Gpt, a: u32, b: Option<u32>) -> Result<Readout> {
        if let Some(why) = model.nonlinear_residual() {
            return Err(AttributionError::NonlinearResidual(why));
        }
        let mut u = model.unembed_row(a)?;
        let mut unembed_bias = model.logit_bias(a)?;
        let mut bigram = model.bigram_column(a)?;
        if let Some(b) = b {
            u.iter_mut().zip(model.unembed_row(b)?).for_each(|(x, y)| *x -= y);
            unembed_bias -= model.logit_bias(b)?;
            if let (Some(ca), Some(cb)) = (&mut bigram, model.bigram_column(b)?) {
                ca.iter_mut().zip(cb).for_each(|(x, y)| *x -= y);
            }
        }
        let norm = model.final_norm()?;
        let mut read: Vec<f32> = norm.weight.iter().zip(&u).map(|(w, u)| w * u).collect();
        if norm.centred {
            // LayerNorm subtracts the mean first: c·(r − mean(r)) = (c − mean(c))·r.
            let mean = read.iter().map(|&x| x as f64).sum::<f64>() / read.len().max(1) as f64;
            read.iter_mut().for_each(|x| *x -= mean as f32);
        }
        let norm_bias = norm.bias.as_ref().map(|bias| dot(bias, &u));
        let cfg = &model.config;
        let proj = |which| {
            (0..cfg.n_layer)
                .map(|l| model.out_projection(l, which))
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        Ok(Readout {
            a,
            b,
            read,
            norm,
            norm_bias,
            unembed_bias,
            n_head: cfg.n_head,
            d_head: cfg.d_head,
            attn_out: proj(Sublayer::Attn)?,
            mlp_out: proj(Sublayer::Mlp)?,
            bigram,
        })
    }

    /// Σ_d kept_d · W[d, j] · r_d for every input j of `p`, kept_d = (write_d ≠ 0): the sublayer's AbsTopK mask
    /// as this prompt set it (a channel an intervention wrote counts as kept).
    fn columns(&self, p: &OutProjection, write: &[f32]) -> Vec<f32> {
        let mut cols = vec![0f32; p.inp];
        for (d, w_row) in p.weight.chunks_exact(p.inp).enumerate() {
            if write[d] == 0.0 || self.read[d] == 0.0 {
                continue;
            }
            let r = self.read[d];
            for (c, w) in cols.iter_mut().zip(w_row) {
                *c += w * r;
            }
        }
        cols
    }

    fn frame(&self, rec: &Recorded, pos: usize) -> Result<Frame> {
        let x = row(rec, &HookName::FinalResid.to_string(), pos)?;
        let mut f = Frame {
            scale: self.norm.scale(x),
            attn_cols: Vec::new(),
            mlp_cols: Vec::new(),
        };
        for l in 0..self.attn_out.len() {
            let aw = row(rec, &HookName::block(l, HookSite::AttnResidDelta).to_string(), pos)?;
            f.attn_cols.push(self.columns(&self.attn_out[l], aw));
            let mw = row(rec, &HookName::block(l, HookSite::MlpResidDelta).to_string(), pos)?;
            f.mlp_cols.push(self.columns(&self.mlp_out[l], mw));
        }
        Ok(f)
    }

    /// Decomposes logit(A) − logit(B) (or logit(A)) at the last position of `rec` (recorded with
    /// [`record_pattern`]).
    pub fn decompose(&self, rec: &Recorded) -> Result<Decomposition> {
        let pos = rec.ids.len().saturating_sub(1);
        let f = self.frame(rec, pos)?;
        let s = f.scale;
        let direct = |v: &[f32]| s * dot(v, &self.read);
        let comp = |name: String, kind, layer, head, value| Component {
            name,
            kind,
            layer,
            head,
            value,
        };
        let mut comps = Vec::new();
        let final_resid = row(rec, &HookName::FinalResid.to_string(), pos)?;
        let embed = row(rec, &HookName::block(0, HookSite::ResidIn).to_string(), pos)?;
        comps.push(comp(
            "embedding".into(),
            ComponentKind::Embedding,
            None,
            None,
            direct(embed),
        ));
        // What the residual holds beyond the embedding and the writes: interventions on the stream itself.
        let mut rest: Vec<f32> = final_resid.iter().zip(embed).map(|(x, e)| x - e).collect();
        for l in 0..self.attn_out.len() {
            let aw = row(rec, &HookName::block(l, HookSite::AttnResidDelta).to_string(), pos)?;
            let y = row(rec, &HookName::block(l, HookSite::AttnY).to_string(), pos)?;
            let cols = &f.attn_cols[l];
            let mut heads_abs = 0f32;
            for h in 0..self.n_head {
                let r = h * self.d_head..(h + 1) * self.d_head;
                let v = s * dot(&y[r.clone()], &cols[r]);
                heads_abs += v.abs();
                comps.push(comp(
                    format!("{l}.attn.h{h}"),
                    ComponentKind::AttnHead,
                    Some(l),
                    Some(h),
                    v,
                ));
            }
            let heads_sum: f32 = comps.iter().rev().take(self.n_head).map(|c| c.value).sum();
            let bias = match &self.attn_out[l].bias {
                Some(b) => {
                    s * (0..b.len())
                        .filter(|&d| aw[d] != 0.0)
                        .map(|d| b[d] * self.read[d])
                        .sum::<f32>()
                }
                None => 0.0,
            };
            // The write less its heads and bias: float noise, unless an intervention changed the write itself.
            let edit = direct(aw) - heads_sum - bias;
            if edit.abs() > EDIT_TOLERANCE * (1.0 + heads_abs + bias.abs()) {
                comps.push(comp(
                    format!("{l}.attn bias"),
                    ComponentKind::AttnBias,
                    Some(l),
                    None,
                    bias,
                ));
                comps.push(comp(
                    format!("{l}.attn edits"),
                    ComponentKind::SublayerEdit,
                    Some(l),
                    None,
                    edit,
                ));
            } else {
                comps.push(comp(
                    format!("{l}.attn bias"),
                    ComponentKind::AttnBias,
                    Some(l),
                    None,
                    bias + edit,
                ));
            }
            let mw = row(rec, &HookName::block(l, HookSite::MlpResidDelta).to_string(), pos)?;
            comps.push(comp(format!("{l}.mlp"), ComponentKind::Mlp, Some(l), None, direct(mw)));
            for (d, r) in rest.iter_mut().enumerate() {
                *r -= aw[d] + mw[d];
            }
        }
        let largest = final_resid.iter().fold(1f32, |m, v| m.max(v.abs()));
        if rest.iter().any(|r| r.abs() > EDIT_TOLERANCE * largest) {
            comps.push(comp(
                "residual-stream edits".into(),
                ComponentKind::ResidualEdit,
                None,
                None,
                direct(&rest),
            ));
        }
        if let Some(b) = self.norm_bias {
            comps.push(comp("final norm bias".into(), ComponentKind::NormBias, None, None, b));
        }
        if let Some(col) = &self.bigram {
            let last = *rec.ids.last().unwrap_or(&0) as usize;
            comps.push(comp(
                "bigram table".into(),
                ComponentKind::BigramTable,
                None,
                None,
                col[last],
            ));
        }
        let logit_a = rec.last_logits[self.a as usize];
        let logit_b = self.b.map(|b| rec.last_logits[b as usize]);
        Ok(Decomposition {
            a: self.a,
            b: self.b,
            logit_a,
            logit_b,
            logit_diff: logit_a - logit_b.unwrap_or(0.0),
            unembed_bias: self.unembed_bias,
            norm_scale: s,
            components: comps,
        })
    }

    /// Each node's direct effect on logit(A) − logit(B) at the last position of `rec` (recorded with
    /// [`record_pattern`] and the nodes' hooks). Writes (`resid_delta`) and `final_resid` channels add their
    /// value along the read direction; a neuron (`mlp.post_act`) or a value channel (`attn.v`, through the
    /// attention-weighted `attn.y` of its channel) adds what its output column writes into the kept channels.
    /// Reads (`act_in`) and queries and keys have no direct path and are left out.
    pub fn node_effects(&self, rec: &Recorded, nodes: &[NodeId]) -> Result<BTreeMap<NodeId, f32>> {
        let pos = rec.ids.len().saturating_sub(1);
        let f = self.frame(rec, pos)?;
        let s = f.scale;
        let mut out = BTreeMap::new();
        for n in nodes {
            let at = |site: HookSite| -> Result<f32> {
                let hook = match n.layer {
                    Some(l) => HookName::block(l, site).to_string(),
                    None => HookName::FinalResid.to_string(),
                };
                Ok(row(rec, &hook, pos)?.get(n.index).copied().unwrap_or(0.0))
            };
            let layer = n.layer.unwrap_or(0);
            let col = |cols: &[Vec<f32>]| cols.get(layer).and_then(|c| c.get(n.index)).copied().unwrap_or(0.0);
            let v = match n.site {
                _ if n.index >= self.read.len() && !matches!(n.site, Site::MlpPostAct | Site::AttnV) => continue,
                Site::AttnResidDelta => s * at(HookSite::AttnResidDelta)? * self.read[n.index],
                Site::MlpResidDelta => s * at(HookSite::MlpResidDelta)? * self.read[n.index],
                // `at` reads final_resid for the one node without a layer.
                Site::FinalResid => s * at(HookSite::ResidIn)? * self.read[n.index],
                Site::MlpPostAct => s * at(HookSite::MlpPostAct)? * col(&f.mlp_cols),
                Site::AttnV => s * at(HookSite::AttnY)? * col(&f.attn_cols),
                // Features have no weights of the model behind them; their direct effect is not measured here.
                Site::AttnActIn | Site::MlpActIn | Site::AttnQ | Site::AttnK | Site::Sae(_) => continue,
            };
            out.insert(*n, v);
        }
        Ok(out)
    }
}

/// How far a sublayer's write, or the residual, may stray from the sum of its parts before the difference is
/// shown as an edit of its own rather than float noise (relative).
const EDIT_TOLERANCE: f32 = 1e-4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::recording::record;
    use crate::model::synth::{synth_tensors, SynthShape};
    use crate::model::{Action, Checkpoint, Config, Hooks, Intervention, LoadOptions, Stored};
    use candle_core::{Device, Tensor};

    fn model_of(cfg: Config, seed: u64) -> Gpt {
        let mut tensors = synth_tensors(&cfg, 0.3, seed).unwrap();
        // Synth norms are identities; give the final norm a real gain (and bias) so that the frozen-scale
        // algebra is exercised.
        let d = cfg.d_model;
        let gain: Vec<f32> = (0..d).map(|i| 0.5 + (i % 7) as f32 * 0.2).collect();
        tensors.insert(
            "transformer.ln_f.weight".into(),
            Stored::Dense(Tensor::new(gain, &Device::Cpu).unwrap()),
        );
        if tensors.contains_key("transformer.ln_f.bias") {
            let bias: Vec<f32> = (0..d).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect();
            tensors.insert(
                "transformer.ln_f.bias".into(),
                Stored::Dense(Tensor::new(bias, &Device::Cpu).unwrap()),
            );
        }
        let ck = Checkpoint {
            path: "<synth>".into(),
            tensors,
        };
        Gpt::from_checkpoint(cfg, &ck, LoadOptions::default()).unwrap()
    }

    fn tiny(layer_norm: bool) -> Gpt {
        let mut cfg = SynthShape::Tiny.config();
        cfg.bias = true;
        if layer_norm {
            cfg.rms_norm = false;
            cfg.ln_bias = true;
        }
        model_of(cfg, 5)
    }

    const IDS: [u32; 6] = [3, 17, 5, 99, 3, 250];

    fn run(m: &Gpt, hooks: &mut Hooks) -> Recorded {
        record(m, &IDS, hooks).unwrap()
    }

    fn recording(m: &Gpt) -> Hooks {
        Hooks::recording(&record_pattern(m.config.n_layer)).unwrap()
    }

    fn sum(d: &Decomposition) -> f32 {
        d.components.iter().map(|c| c.value).sum()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 2e-3 * (1.0 + a.abs().max(b.abs()))
    }

    /// The rows add up to the logit difference the forward pass computed, less the unembedding bias: with
    /// RMSNorm and with LayerNorm (centring and a bias), and every expected row is there once.
    #[test]
    fn rows_sum_to_the_logit_difference_up_to_the_unembedding_bias() {
        for layer_norm in [false, true] {
            let m = tiny(layer_norm);
            let r = Readout::new(&m, 7, 11).unwrap();
            let d = r.decompose(&run(&m, &mut recording(&m))).unwrap();
            assert!(d.unembed_bias != 0.0, "the synth model has a logits bias");
            assert!(
                close(sum(&d) + d.unembed_bias, d.logit_diff),
                "layer_norm {layer_norm}: {} + {} vs {}",
                sum(&d),
                d.unembed_bias,
                d.logit_diff
            );
            let names: Vec<&str> = d.components.iter().map(|c| c.name.as_str()).collect();
            let heads = d
                .components
                .iter()
                .filter(|c| c.kind == ComponentKind::AttnHead)
                .count();
            assert_eq!(heads, m.config.n_layer * m.config.n_head);
            for want in [
                "embedding",
                "0.attn.h0",
                "0.attn bias",
                "0.mlp",
                "1.mlp",
                "bigram table",
            ] {
                assert!(names.contains(&want), "{want} missing from {names:?}");
            }
            assert_eq!(names.contains(&"final norm bias"), layer_norm);
            assert!(
                !names.iter().any(|n| n.contains("edits")),
                "no intervention, no edit row: {names:?}"
            );
            // Swapping A and B negates every row.
            let swapped = Readout::new(&m, 11, 7)
                .unwrap()
                .decompose(&run(&m, &mut recording(&m)))
                .unwrap();
            for (x, y) in d.components.iter().zip(&swapped.components) {
                assert!(close(x.value, -y.value), "{}: {} vs {}", x.name, x.value, y.value);
            }
        }
    }

    /// With one token the rows split the logit itself: they sum to logit(A) less A's unembedding bias, and
    /// every row of the pair's decomposition is A's row less B's.
    #[test]
    fn one_token_splits_its_own_logit() {
        for layer_norm in [false, true] {
            let m = tiny(layer_norm);
            let single = |t: u32| {
                Readout::of(&m, t, None)
                    .unwrap()
                    .decompose(&run(&m, &mut recording(&m)))
                    .unwrap()
            };
            let (da, db) = (single(7), single(11));
            assert_eq!(da.b, None);
            assert_eq!(da.logit_diff, da.logit_a);
            assert!(da.unembed_bias != 0.0);
            assert!(
                close(sum(&da) + da.unembed_bias, da.logit_a),
                "layer_norm {layer_norm}: {} + {} vs {}",
                sum(&da),
                da.unembed_bias,
                da.logit_a
            );
            let pair = Readout::new(&m, 7, 11)
                .unwrap()
                .decompose(&run(&m, &mut recording(&m)))
                .unwrap();
            assert_eq!(pair.logit_b, Some(db.logit_a));
            for ((p, x), y) in pair.components.iter().zip(&da.components).zip(&db.components) {
                assert_eq!(p.name, x.name);
                assert!(
                    close(p.value, x.value - y.value),
                    "{}: {} vs {} - {}",
                    p.name,
                    p.value,
                    x.value,
                    y.value
                );
            }
        }
    }

    /// A head whose output is zeroed contributes nothing; an edit of the residual stream gets a row of its own
    /// and the sum still holds.
    #[test]
    fn interventions_show_where_they_act() {
        let m = tiny(false);
        let r = Readout::new(&m, 7, 11).unwrap();
        let dh = m.config.d_head;
        let mut hooks = recording(&m);
        hooks.intervene(
            "1.attn.y",
            Intervention::new(Action::Set(0.0)).channels((dh..2 * dh).collect()),
        );
        hooks.intervene(
            "final_resid",
            Intervention::new(Action::Add(vec![0.3; m.config.d_model])),
        );
        let d = r.decompose(&run(&m, &mut hooks)).unwrap();
        let head = d.components.iter().find(|c| c.name == "1.attn.h1").unwrap();
        assert_eq!(head.value, 0.0);
        assert!(d.components.iter().any(|c| c.kind == ComponentKind::ResidualEdit));
        assert!(close(sum(&d) + d.unembed_bias, d.logit_diff));
        // Setting a write's channel to a large value is an edit of that sublayer's write.
        let mut hooks = recording(&m);
        hooks.intervene(
            "0.attn.resid_delta",
            Intervention::new(Action::Set(5.0)).channels(vec![0, 1, 2]),
        );
        let d = r.decompose(&run(&m, &mut hooks)).unwrap();
        assert!(
            d.components.iter().any(|c| c.name == "0.attn edits"),
            "{:?}",
            d.components
        );
        assert!(close(sum(&d) + d.unembed_bias, d.logit_diff));
    }

    /// Node effects add up to the rows they split: every channel of a write to its sublayer's row, every
    /// value channel of a head to the head's row, every neuron plus the bias to the MLP's row.
    #[test]
    fn node_effects_split_the_rows() {
        let m = tiny(true);
        let cfg = m.config.clone();
        let r = Readout::new(&m, 7, 11).unwrap();
        let mut pattern = record_pattern(cfg.n_layer);
        pattern.push_str("|1\\.attn\\.v$");
        let rec = run(&m, &mut Hooks::recording(&pattern).unwrap());
        let d = r.decompose(&rec).unwrap();
        let row = |name: &str| d.components.iter().find(|c| c.name == name).unwrap().value;
        let ids = |site: &str, layer: Option<usize>, n: std::ops::Range<usize>| -> Vec<NodeId> {
            n.map(|i| match layer {
                Some(l) => format!("{l}.{site}[{i}]").parse().unwrap(),
                None => format!("{site}[{i}]").parse().unwrap(),
            })
            .collect()
        };
        let total = |nodes: &[NodeId]| -> f32 { r.node_effects(&rec, nodes).unwrap().values().sum() };
        assert!(close(
            total(&ids("mlp.resid_delta", Some(1), 0..cfg.d_model)),
            row("1.mlp")
        ));
        let writes = total(&ids("attn.resid_delta", Some(0), 0..cfg.d_model));
        let heads: f32 = (0..cfg.n_head).map(|h| row(&format!("0.attn.h{h}"))).sum::<f32>() + row("0.attn bias");
        assert!(close(writes, heads), "{writes} vs {heads}");
        let dh = cfg.d_head;
        assert!(close(total(&ids("attn.v", Some(1), 2 * dh..3 * dh)), row("1.attn.h2")));
        let neurons = total(&ids("mlp.post_act", Some(0), 0..cfg.d_mlp));
        let mlp_bias = {
            let p = m.out_projection(0, Sublayer::Mlp).unwrap();
            let w = &rec.hooks["0.mlp.resid_delta"];
            let last = &w.1[(IDS.len() - 1) * w.0..];
            let b = p.bias.unwrap();
            d.norm_scale
                * (0..b.len())
                    .filter(|&i| last[i] != 0.0)
                    .map(|i| b[i] * r.read[i])
                    .sum::<f32>()
        };
        assert!(
            close(neurons + mlp_bias, row("0.mlp")),
            "{neurons} + {mlp_bias} vs {}",
            row("0.mlp")
        );
        // The final residual's channels add up to everything but the bias rows past the norm.
        let finals = total(&ids("final_resid", None, 0..cfg.d_model));
        let past_norm = row("final norm bias") + row("bigram table");
        assert!(close(finals + past_norm + d.unembed_bias, d.logit_diff));
        // Reads, queries and keys have no direct path.
        let none = r.node_effects(&rec, &ids("attn.q", Some(0), 0..3)).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_nonlinear_residual_is_refused() {
        let mut cfg = SynthShape::Tiny.config();
        cfg.residual_activation_type = crate::model::config::ResidualActivation::Relu;
        let m = model_of(cfg, 2);
        let e = Readout::new(&m, 1, 2).err().expect("refused");
        assert!(e.to_string().contains("activation to the residual stream"), "{e}");
        // A token past the vocabulary is a clear error, not a panic.
        let m = tiny(false);
        let e = Readout::new(&m, 1, 1_000_000).err().expect("refused");
        assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    }
}
