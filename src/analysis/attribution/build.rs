//! The exact attribution graph of one prompt: one recorded forward pass, the model's weights, and the frozen
//! quantities (attention patterns, norm scales, AbsTopK selections, the residual's masks) turned into nodes and
//! one-step linear edges.
//!
//! The steps, per block `l` and position `p` (a node is an active channel: nonzero on this prompt):
//! - residual → `l.attn.act_in[j]@p` and `l.mlp.act_in[j]@p`: every earlier write into the residual at `p` (the
//!   embeddings, each sublayer's `resid_delta` channels), times the frozen residual masks, through the norm with
//!   its scale frozen: `gain_j / scale_p` (LayerNorm also subtracts each write's mean). Bias: the norm's bias.
//! - `l.attn.act_in[j]@p` → `l.attn.v[c]@p`: `W_V[c, j]`. Bias: the value bias.
//! - `l.attn.v[c]@p'` → `l.attn.resid_delta[d]@p`: `pattern[h(c), p, p'] · W_O[d, c]`. Bias: the output bias.
//! - `l.mlp.act_in[j]@p` → `l.mlp.post_act[c]@p`: `W_in[c, j]`; the node's input is its pre-activation.
//! - `l.mlp.post_act[c]@p` → `l.mlp.resid_delta[d]@p`: `W_out[d, c]`.
//! - residual → `final_resid[d]@last`, and `final_resid[d]@last` → each target logit through the final norm
//!   (scale frozen) and the unembedding; the bigram table's row of the last token → the logits directly.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::target::{TargetSpec, Targets};
use super::{AttributeError, AttributeInput, UnsupportedModel};
use crate::analysis::recording::{record, Recorded};
use crate::circuit::{NodeId, PositionedNode, Site};
use crate::model::config::{Loctype, ResidualActivation};
use crate::model::{Gpt, HookName, HookSite, Hooks};

type Result<T> = std::result::Result<T, AttributeError>;

/// What a node of the graph is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeKind {
    /// The token embedding row of the token at the node's position (activation 1).
    Embedding {
        /// The token.
        token: u32,
    },
    /// The positional embedding row of the node's position (activation 1).
    Position,
    /// The bigram table's row of the token at the node's position, added to the logits (activation 1).
    Bigram {
        /// The token.
        token: u32,
    },
    /// A channel of a node site.
    Channel {
        /// The channel.
        node: NodeId,
    },
    /// A target: a token's logit, or the difference of two tokens' logits.
    Logit {
        /// The token.
        token: u32,
        /// The token whose logit is subtracted.
        alt: Option<u32>,
        /// Its weight in the influence (probability, or 1 for a given target).
        weight: f32,
    },
}

/// One node: what it is, where, and its value on the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrNode {
    /// What the node is.
    pub kind: NodeKind,
    /// Its token position.
    pub pos: usize,
    /// What it carries along its outgoing edges: the channel's value as the model computed it (after the MLP's
    /// nonlinearity for `mlp.post_act`), 1 for embeddings and the bigram row, the logit (difference) for targets.
    pub activation: f32,
    /// The part of its input that comes from no node: biases, the norm's bias, the unembedding bias.
    pub bias: f32,
}

impl AttrNode {
    /// The node's id: `1.mlp.post_act[98]@12`, `embed@3`, `pos@3`, `bigram@7`, `logit[41]@7`, `logit[41-12]@7`.
    pub fn id(&self) -> String {
        let p = self.pos;
        match &self.kind {
            NodeKind::Embedding { .. } => format!("embed@{p}"),
            NodeKind::Position => format!("pos@{p}"),
            NodeKind::Bigram { .. } => format!("bigram@{p}"),
            NodeKind::Channel { node } => PositionedNode { node: *node, pos: p }.to_string(),
            NodeKind::Logit { token, alt: None, .. } => format!("logit[{token}]@{p}"),
            NodeKind::Logit {
                token, alt: Some(a), ..
            } => format!("logit[{token}-{a}]@{p}"),
        }
    }

    /// Whether the node has no input from other nodes by construction (embeddings, bigram row).
    pub fn is_source(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::Embedding { .. } | NodeKind::Position | NodeKind::Bigram { .. }
        )
    }

    /// The target weight of a logit node (0 for every other node).
    pub fn target_weight(&self) -> f32 {
        match self.kind {
            NodeKind::Logit { weight, .. } => weight,
            _ => 0.0,
        }
    }

    /// The channel, for channel nodes.
    pub fn channel(&self) -> Option<NodeId> {
        match self.kind {
            NodeKind::Channel { node } => Some(node),
            _ => None,
        }
    }
}

/// A weighted edge: `weight` = the source's activation × the linear step from source to target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    /// Index of the source node (always below `dst`: nodes are in forward order).
    pub src: u32,
    /// Index of the target node.
    pub dst: u32,
    /// The source's direct contribution to the target's input.
    pub weight: f32,
}

/// The exact, unpruned graph of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributionGraph {
    /// The prompt's token ids.
    pub ids: Vec<u32>,
    /// The nodes, in forward order (every edge runs from a lower index to a higher one).
    pub nodes: Vec<AttrNode>,
    /// The edges, sorted by target, then source.
    pub edges: Vec<Edge>,
    /// The model's number of blocks.
    pub n_layer: usize,
}

impl AttributionGraph {
    /// Each node's input: its bias plus the sum of its incoming edges (f64 sums). For a channel node this is the
    /// value the model computed before AbsTopK (before the nonlinearity for `mlp.post_act`); for a logit node,
    /// the logit (difference).
    pub fn inputs(&self) -> Vec<f64> {
        let mut sum: Vec<f64> = self.nodes.iter().map(|n| n.bias as f64).collect();
        for e in &self.edges {
            sum[e.dst as usize] += e.weight as f64;
        }
        sum
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == id)
    }

    /// The indices of the logit (target) nodes.
    pub fn logit_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.nodes[i].kind, NodeKind::Logit { .. }))
            .collect()
    }
}

/// The hooks the graph reads, as a recording pattern.
fn record_pattern(n_layer: usize) -> String {
    let mut names = vec![HookName::FinalResid.to_string()];
    for l in 0..n_layer {
        for site in [
            HookSite::ResidIn,
            HookSite::AttnActIn,
            HookSite::AttnV,
            HookSite::AttnResidDelta,
            HookSite::ResidMid,
            HookSite::MlpActIn,
            HookSite::MlpPostAct,
            HookSite::MlpResidDelta,
        ] {
            names.push(HookName::block(l, site).to_string());
        }
    }
    names
        .iter()
        .map(|h| format!("{}$", regex::escape(h)))
        .collect::<Vec<_>>()
        .join("|")
}

/// Row `pos` of a recorded hook.
fn row<'a>(rec: &'a Recorded, hook: &HookName, pos: usize) -> Result<&'a [f32]> {
    let name = hook.to_string();
    let (w, v) = rec
        .hooks
        .get(&name)
        .ok_or_else(|| AttributeInput::NotRecorded { hook: name.clone() })?;
    v.get(pos * w..(pos + 1) * w)
        .ok_or_else(|| AttributeInput::NoPosition { hook: name, pos }.into())
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn opt_values(t: &Option<Tensor>, n: usize) -> Result<Vec<f32>> {
    match t {
        Some(t) => values(t),
        None => Ok(vec![0.0; n]),
    }
}

/// A norm as numbers (gain, bias, whether it centres, epsilon): the readout's, whatever norm it is.
type NormParams = crate::model::readout::FinalNorm;

/// What a node writes into the residual stream at its position.
#[derive(Clone, Copy)]
enum Write {
    /// `value` into channel `d`.
    Channel { d: usize, value: f32 },
    /// The token embedding row of the position.
    Embedding,
    /// The positional embedding row of the position.
    Position,
}

/// A write into the residual at one position, after stage `stage` (0: embeddings; 2l+1: block l's attention;
/// 2l+2: block l's MLP).
#[derive(Clone, Copy)]
struct Writer {
    node: u32,
    stage: usize,
    write: Write,
}

/// The growing graph and the frozen quantities shared by its steps.
struct Builder {
    nodes: Vec<AttrNode>,
    edges: Vec<Edge>,
    d: usize,
    /// (T, D) token embedding rows and positional rows of the prompt.
    tok_rows: Vec<f32>,
    pos_rows: Vec<f32>,
    /// Per stage 1..=2L and position: which residual channels the frozen residual activation / AbsTopK kept
    /// (None: the model has no residual nonlinearity).
    masks: Option<Vec<Vec<Vec<bool>>>>,
    /// Per position: the residual writes so far.
    writers: Vec<Vec<Writer>>,
}

impl Builder {
    fn node(&mut self, kind: NodeKind, pos: usize, activation: f32, bias: f32) -> u32 {
        self.nodes.push(AttrNode {
            kind,
            pos,
            activation,
            bias,
        });
        (self.nodes.len() - 1) as u32
    }

    fn edge(&mut self, src: u32, dst: u32, weight: f64) {
        if weight != 0.0 {
            self.edges.push(Edge {
                src,
                dst,
                weight: weight as f32,
            });
        }
    }

    /// Whether residual channel `k` at `pos` survives every frozen residual mask from after stage `from` up to
    /// the reading point after stage `to`.
    fn kept(&self, from: usize, to: usize, pos: usize, k: usize) -> bool {
        match &self.masks {
            None => true,
            Some(m) => (from.max(1)..=to).all(|s| m[s - 1][pos][k]),
        }
    }

    /// Edges from the residual's writes at `pos` (up to stage `to`) into `readers` (channel j → node), through
    /// the frozen norm (`gain_j · inv` and centring) or, with no norm, directly.
    fn read_residual(&mut self, to: usize, pos: usize, readers: &[(usize, u32)], norm: Option<(&NormParams, f64)>) {
        let d = self.d;
        let writers: Vec<Writer> = self.writers[pos].iter().copied().filter(|w| w.stage <= to).collect();
        let factor = |j: usize| norm.map_or(1.0, |(n, inv)| n.weight[j] as f64 * inv);
        let centred = norm.is_some_and(|(n, _)| n.centred);
        for w in writers {
            // The write's contribution to the residual at the reading point, channel by channel.
            let contribution: Vec<(usize, f64)> = match w.write {
                Write::Channel { d: k, value } => {
                    if self.kept(w.stage, to, pos, k) {
                        vec![(k, value as f64)]
                    } else {
                        vec![]
                    }
                }
                Write::Embedding | Write::Position => {
                    let rows = if matches!(w.write, Write::Embedding) {
                        &self.tok_rows
                    } else {
                        &self.pos_rows
                    };
                    (0..d)
                        .filter(|&k| self.kept(w.stage, to, pos, k))
                        .map(|k| (k, rows[pos * d + k] as f64))
                        .filter(|&(_, v)| v != 0.0)
                        .collect()
                }
            };
            if contribution.is_empty() {
                continue;
            }
            if centred {
                let mean = contribution.iter().map(|&(_, v)| v).sum::<f64>() / d as f64;
                let mut dense = vec![0f64; d];
                for &(k, v) in &contribution {
                    dense[k] = v;
                }
                for &(j, t) in readers {
                    self.edge(w.node, t, factor(j) * (dense[j] - mean));
                }
            } else {
                let mut dense = vec![0f64; d];
                for &(k, v) in &contribution {
                    dense[k] = v;
                }
                for &(j, t) in readers {
                    self.edge(w.node, t, factor(j) * dense[j]);
                }
            }
        }
    }
}

/// The active channels (index, value) of a recorded row.
fn active(row: &[f32]) -> Vec<(usize, f32)> {
    row.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0.0)
        .map(|(i, &v)| (i, v))
        .collect()
}

/// Builds the exact attribution graph of `ids` for `targets` (one forward pass; the targets are the last
/// position's logits).
pub fn build(model: &Gpt, ids: &[u32], targets: &Targets) -> Result<AttributionGraph> {
    let cfg = &model.config;
    if cfg.d_pos_emb.is_some() {
        return Err(AttributeError::Unsupported(UnsupportedModel::CatPosEmb));
    }
    if ids.is_empty() {
        return Err(AttributeInput::EmptyPrompt.into());
    }
    let (n_layer, d, a, f) = (cfg.n_layer, cfg.d_model, cfg.attn_width(), cfg.d_mlp);
    let (t_len, last) = (ids.len(), ids.len() - 1);
    let mut hooks = Hooks::recording(&record_pattern(n_layer))?;
    hooks.set_record_patterns(".*")?;
    let rec = record(model, ids, &mut hooks)?;
    let targets = targets.resolve(&rec.last_logits)?;
    let w = model.dense_weights()?;
    let id_tensor = Tensor::new(ids, &Device::Cpu)?;
    let mut b = Builder {
        nodes: Vec::new(),
        edges: Vec::new(),
        d,
        tok_rows: values(&w.wte.index_select(&id_tensor, 0)?)?,
        pos_rows: values(&w.wpe.narrow(0, 0, t_len)?)?,
        masks: None,
        writers: vec![Vec::new(); t_len],
    };
    let residual_nonlinear = cfg.residual_activation_type != ResidualActivation::Identity
        || [Loctype::ResidPostAttn, Loctype::ResidPostMlp]
            .into_iter()
            .any(|l| cfg.topk_at(l, d).is_some());
    if residual_nonlinear {
        // The residual after each stage, as recorded: its zeros are the frozen mask.
        let mut masks = Vec::with_capacity(2 * n_layer);
        for l in 0..n_layer {
            let after_mlp = if l + 1 < n_layer {
                HookName::block(l + 1, HookSite::ResidIn)
            } else {
                HookName::FinalResid
            };
            for hook in [HookName::block(l, HookSite::ResidMid), after_mlp] {
                let per_pos = (0..t_len)
                    .map(|p| Ok(row(&rec, &hook, p)?.iter().map(|&v| v != 0.0).collect()))
                    .collect::<Result<Vec<Vec<bool>>>>()?;
                masks.push(per_pos);
            }
        }
        b.masks = Some(masks);
    }
    for (p, &tok) in ids.iter().enumerate() {
        let e = b.node(NodeKind::Embedding { token: tok }, p, 1.0, 0.0);
        let q = b.node(NodeKind::Position, p, 1.0, 0.0);
        b.writers[p].push(Writer {
            node: e,
            stage: 0,
            write: Write::Embedding,
        });
        b.writers[p].push(Writer {
            node: q,
            stage: 0,
            write: Write::Position,
        });
    }
    for (l, blk) in w.blocks.iter().enumerate() {
        let hook = |site| HookName::block(l, site);
        let chan = |site, i| NodeKind::Channel {
            node: NodeId::new(l, site, i),
        };
        // Attention: residual → act_in → v → (pattern) → resid_delta.
        let ln1 = NormParams::of(&blk.ln_1)?;
        let qkv = values(&blk.c_attn.0)?; // (3A, D)
        let qkv_b = opt_values(&blk.c_attn.1, 3 * a)?;
        let proj = values(&blk.attn_proj.0)?; // (D, A)
        let proj_b = opt_values(&blk.attn_proj.1, d)?;
        let pattern = rec
            .patterns
            .get(&l)
            .ok_or(AttributeInput::PatternNotRecorded { layer: l })?;
        let mut act_in = vec![Vec::new(); t_len];
        for (p, act_in_p) in act_in.iter_mut().enumerate() {
            let inv = ln1.scale_f64(row(&rec, &hook(HookSite::ResidIn), p)?);
            for (j, v) in active(row(&rec, &hook(HookSite::AttnActIn), p)?) {
                let bias = ln1.bias.as_ref().map_or(0.0, |bb| bb[j]);
                act_in_p.push((j, b.node(chan(Site::AttnActIn, j), p, v, bias), v));
            }
            let readers: Vec<(usize, u32)> = act_in_p.iter().map(|&(j, n, _)| (j, n)).collect();
            b.read_residual(2 * l, p, &readers, Some((&ln1, inv)));
        }
        let mut vals = vec![Vec::new(); t_len];
        for p in 0..t_len {
            for (c, v) in active(row(&rec, &hook(HookSite::AttnV), p)?) {
                let r = 2 * a + c;
                let node = b.node(chan(Site::AttnV, c), p, v, qkv_b[r]);
                for &(j, src, x) in &act_in[p] {
                    b.edge(src, node, x as f64 * qkv[r * d + j] as f64);
                }
                vals[p].push((c, node, v));
            }
        }
        for p in 0..t_len {
            for (k, o) in active(row(&rec, &hook(HookSite::AttnResidDelta), p)?) {
                let node = b.node(chan(Site::AttnResidDelta, k), p, o, proj_b[k]);
                for (q, vals_q) in vals.iter().enumerate().take(p + 1) {
                    for &(c, src, v) in vals_q {
                        let h = c / cfg.d_head;
                        let weight = pattern[(h * t_len + p) * t_len + q] as f64 * proj[k * a + c] as f64;
                        b.edge(src, node, v as f64 * weight);
                    }
                }
                b.writers[p].push(Writer {
                    node,
                    stage: 2 * l + 1,
                    write: Write::Channel { d: k, value: o },
                });
            }
        }
        // MLP: residual → act_in → post_act → resid_delta.
        let ln2 = NormParams::of(&blk.ln_2)?;
        let fc = values(&blk.c_fc.0)?; // (F, D)
        let fc_b = opt_values(&blk.c_fc.1, f)?;
        let out = values(&blk.mlp_proj.0)?; // (D, F)
        let out_b = opt_values(&blk.mlp_proj.1, d)?;
        for p in 0..t_len {
            let inv = ln2.scale_f64(row(&rec, &hook(HookSite::ResidMid), p)?);
            let mut reads = Vec::new();
            for (j, v) in active(row(&rec, &hook(HookSite::MlpActIn), p)?) {
                let bias = ln2.bias.as_ref().map_or(0.0, |bb| bb[j]);
                reads.push((j, b.node(chan(Site::MlpActIn, j), p, v, bias), v));
            }
            let readers: Vec<(usize, u32)> = reads.iter().map(|&(j, n, _)| (j, n)).collect();
            b.read_residual(2 * l + 1, p, &readers, Some((&ln2, inv)));
            let mut neurons = Vec::new();
            for (c, v) in active(row(&rec, &hook(HookSite::MlpPostAct), p)?) {
                let node = b.node(chan(Site::MlpPostAct, c), p, v, fc_b[c]);
                for &(j, src, x) in &reads {
                    b.edge(src, node, x as f64 * fc[c * d + j] as f64);
                }
                neurons.push((c, node, v));
            }
            for (k, o) in active(row(&rec, &hook(HookSite::MlpResidDelta), p)?) {
                let node = b.node(chan(Site::MlpResidDelta, k), p, o, out_b[k]);
                for &(c, src, v) in &neurons {
                    b.edge(src, node, v as f64 * out[k * f + c] as f64);
                }
                b.writers[p].push(Writer {
                    node,
                    stage: 2 * l + 2,
                    write: Write::Channel { d: k, value: o },
                });
            }
        }
    }
    // The last position's final residual, then the targets through the frozen final norm.
    let final_row = row(&rec, &HookName::FinalResid, last)?.to_vec();
    let mut finals = Vec::new();
    for (k, x) in active(&final_row) {
        finals.push((
            k,
            b.node(
                NodeKind::Channel {
                    node: NodeId::final_resid(k),
                },
                last,
                x,
                0.0,
            ),
            x,
        ));
    }
    let readers: Vec<(usize, u32)> = finals.iter().map(|&(k, n, _)| (k, n)).collect();
    b.read_residual(2 * n_layer, last, &readers, None);
    let ln_f = NormParams::of(&w.ln_f)?;
    let inv_f = ln_f.scale_f64(&final_row);
    let last_tok = ids[last];
    let bigram = match &w.bigram_table {
        Some(table) => Some((
            b.node(NodeKind::Bigram { token: last_tok }, last, 1.0, 0.0),
            values(&table.get(last_tok as usize)?)?,
        )),
        None => None,
    };
    let unembed_bias = values(&w.final_logits_bias)?;
    let unembed: HashMap<u32, Vec<f32>> = targets
        .iter()
        .flat_map(|t| std::iter::once(t.token).chain(t.alt))
        .map(|tok| Ok((tok, values(&w.lm_head.get(tok as usize)?)?)))
        .collect::<Result<_>>()?;
    for TargetSpec { token, alt, weight } in targets {
        let mut u: Vec<f64> = unembed[&token].iter().map(|&x| x as f64).collect();
        let mut bias = unembed_bias[token as usize] as f64;
        let mut logit = rec.last_logits[token as usize] as f64;
        if let Some(alt) = alt {
            u.iter_mut().zip(&unembed[&alt]).for_each(|(x, &y)| *x -= y as f64);
            bias -= unembed_bias[alt as usize] as f64;
            logit -= rec.last_logits[alt as usize] as f64;
        }
        if let Some(beta) = &ln_f.bias {
            bias += beta.iter().zip(&u).map(|(&x, y)| x as f64 * y).sum::<f64>();
        }
        let mut r: Vec<f64> = u.iter().zip(&ln_f.weight).map(|(x, &g)| x * g as f64).collect();
        if ln_f.centred {
            // LayerNorm subtracts the mean first: (x − mean x)·r = x·(r − mean r).
            let mean = r.iter().sum::<f64>() / d as f64;
            r.iter_mut().for_each(|x| *x -= mean);
        }
        let node = b.node(NodeKind::Logit { token, alt, weight }, last, logit as f32, bias as f32);
        for &(k, src, x) in &finals {
            b.edge(src, node, x as f64 * r[k] * inv_f);
        }
        if let Some((src, row)) = &bigram {
            let mut v = row[token as usize] as f64;
            if let Some(alt) = alt {
                v -= row[alt as usize] as f64;
            }
            b.edge(*src, node, v);
        }
    }
    let mut edges = b.edges;
    edges.sort_by_key(|e| (e.dst, e.src));
    Ok(AttributionGraph {
        ids: ids.to_vec(),
        nodes: b.nodes,
        edges,
        n_layer,
    })
}
