//! Import of the reference viewer's `viz_data.pt` (spec F.1-F.2) into a [`CircuitFile`].
//!
//! Mapping: `circuit_data` → nodes (kept channel indices per location); `importances.loss` / `interv_loss` →
//! `losses.full` / `circuit` (raw); `ch_interv_losses` → per-node `ablated_loss`; `layer_interv_losses` →
//! `blocks`; `pair_data` → edges with `ablation_delta` (a trailing `"bias"` name → a `bias` source);
//! `pair_data_connections` → edge `weight`; `task_samples` → `task_samples`; `samples` → `exemplars`; `all_loss`
//! → `loss_curve`; `prune_config` → `prune_config`; `num_total_nodes` → `model.num_total_nodes`.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{CircuitError, PayloadShape, Result, VizProblem};
use super::file::{
    BlockIdError, BlockLoss, CircuitEdge, CircuitFile, CircuitNode, EdgeEnd, Exemplar, ModelRef, QuantileExemplars,
    TaskSamples,
};
use super::node_id::NodeId;
use crate::model::torch_pickle::{Py, TensorData, TorchZip};
use crate::model::Config;

/// What the import needs to know about the model the payload belongs to.
pub struct ImportTarget<'a> {
    /// The model's config, to check the payload's node indices against.
    pub config: &'a Config,
    /// The model's fingerprint, recorded in the circuit file.
    pub fingerprint: String,
    /// A display name for the model, recorded in the circuit file.
    pub name: Option<String>,
    /// The model directory, recorded in the circuit file.
    pub path: Option<String>,
}

struct Reader {
    zip: TorchZip,
}

impl Reader {
    fn err(&self, at: &str, problem: VizProblem) -> CircuitError {
        CircuitError::Structure {
            path: self.zip.path.clone(),
            at: at.to_string(),
            problem: Box::new(problem),
        }
    }

    fn tensor(&mut self, v: &Py, at: &str) -> Result<(Vec<usize>, TensorData)> {
        match v {
            Py::Tensor(t) => {
                let t = t.clone();
                Ok((t.shape.clone(), self.zip.read(&t)?))
            }
            other => Err(self.err(
                at,
                VizProblem::ExpectedTensor {
                    found: other.type_name(),
                },
            )),
        }
    }

    /// A number: int, float, bool or a one-element tensor.
    fn number(&mut self, v: &Py, at: &str) -> Result<f64> {
        match v {
            Py::Int(i) => Ok(*i as f64),
            Py::Float(f) => Ok(*f),
            Py::Bool(b) => Ok(*b as u8 as f64),
            Py::Tensor(_) => {
                let (_, d) = self.tensor(v, at)?;
                match d.to_f64().as_slice() {
                    [x] => Ok(*x),
                    other => Err(self.err(at, VizProblem::ScalarTensor { count: other.len() })),
                }
            }
            other => Err(self.err(
                at,
                VizProblem::ExpectedNumber {
                    found: other.type_name(),
                },
            )),
        }
    }

    fn index(&mut self, v: &Py, at: &str) -> Result<usize> {
        let x = self.number(v, at)?;
        if x < 0.0 || x.fract() != 0.0 || x > u32::MAX as f64 {
            return Err(self.err(at, VizProblem::NotAnIndex { value: x }));
        }
        Ok(x as usize)
    }

    fn ints(&mut self, v: &Py, at: &str) -> Result<Vec<i64>> {
        match v {
            Py::Tensor(_) => {
                let (_, d) = self.tensor(v, at)?;
                d.to_i64().ok_or_else(|| self.err(at, VizProblem::FractionalValues))
            }
            Py::List(items) | Py::Tuple(items) => items.iter().map(|x| self.index(x, at).map(|i| i as i64)).collect(),
            other => Err(self.err(
                at,
                VizProblem::ExpectedIntegers {
                    found: other.type_name(),
                },
            )),
        }
    }

    fn floats(&mut self, v: &Py, at: &str) -> Result<Vec<f64>> {
        match v {
            Py::Tensor(_) => Ok(self.tensor(v, at)?.1.to_f64()),
            Py::List(items) | Py::Tuple(items) => items.iter().map(|x| self.number(x, at)).collect(),
            other => Err(self.err(
                at,
                VizProblem::ExpectedNumbers {
                    found: other.type_name(),
                },
            )),
        }
    }

    fn tokens(&mut self, v: &Py, at: &str) -> Result<Vec<u32>> {
        self.ints(v, at)?
            .into_iter()
            .map(|t| u32::try_from(t).map_err(|_| self.err(at, VizProblem::TokenOutOfRange { token: t })))
            .collect()
    }

    fn dict<'p>(&self, v: &'p Py, at: &str) -> Result<&'p [(Py, Py)]> {
        v.as_dict()
            .ok_or_else(|| self.err(at, VizProblem::ExpectedDict { found: v.type_name() }))
    }

    fn seq<'p>(&self, v: &'p Py, at: &str) -> Result<&'p [Py]> {
        v.as_seq()
            .ok_or_else(|| self.err(at, VizProblem::ExpectedSeq { found: v.type_name() }))
    }

    fn key_str<'p>(&self, k: &'p Py, at: &str) -> Result<&'p str> {
        k.as_str()
            .ok_or_else(|| self.err(at, VizProblem::ExpectedStrKey { found: k.type_name() }))
    }

    fn node(&self, loc: &str, index: usize, at: &str) -> Result<NodeId> {
        NodeId::from_hook(loc, index).ok_or_else(|| self.err(at, VizProblem::NotALocation { loc: loc.to_string() }))
    }

    fn required<'p>(&self, v: &'p Py, key: &str, at: &str) -> Result<&'p Py> {
        v.get(key)
            .ok_or_else(|| self.err(at, VizProblem::MissingKey { key: key.to_string() }))
    }
}

/// Converts a pickled value to JSON (for `prune_config`); tensors become lists of numbers.
fn py_to_json(r: &mut Reader, v: &Py, at: &str) -> Result<serde_json::Value> {
    use serde_json::Value;
    Ok(match v {
        Py::None => Value::Null,
        Py::Bool(b) => Value::Bool(*b),
        Py::Int(i) => Value::from(*i),
        Py::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Py::Str(s) => Value::String(s.clone()),
        Py::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Py::List(items) | Py::Tuple(items) => {
            Value::Array(items.iter().map(|x| py_to_json(r, x, at)).collect::<Result<_>>()?)
        }
        Py::Dict(items) => {
            let mut map = serde_json::Map::new();
            for (k, x) in items {
                let key = match k {
                    Py::Str(s) => s.clone(),
                    Py::Int(i) => i.to_string(),
                    Py::Float(f) => f.to_string(),
                    Py::Bool(b) => b.to_string(),
                    other => format!("<{}>", other.type_name()),
                };
                map.insert(key, py_to_json(r, x, at)?);
            }
            Value::Object(map)
        }
        Py::Tensor(_) => {
            let (_, d) = r.tensor(v, at)?;
            match d {
                TensorData::Int(xs) => Value::from(xs),
                TensorData::Float(xs) => Value::Array(
                    xs.into_iter()
                        .map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
                        .collect(),
                ),
            }
        }
        Py::Other(s) => Value::String(s.clone()),
    })
}

/// The architecture of the payload's `beeg_model_config`, compared with the target model's.
fn check_payload_config(r: &mut Reader, importances: &Py, cfg: &Config) -> Result<()> {
    let Some(raw) = importances.get("beeg_model_config") else {
        return Ok(());
    };
    let json = py_to_json(r, raw, "importances.beeg_model_config")?;
    let Ok(loaded) = Config::from_json_str(&json.to_string()) else {
        return Ok(()); // An unreadable copy of the config is not worth refusing the import for.
    };
    let p = loaded.config;
    let shape = |c: &Config| -> PayloadShape {
        (
            c.n_layer,
            c.d_model,
            c.n_head,
            c.d_head,
            c.d_mlp,
            c.vocab_size,
            c.d_pos_emb,
        )
    };
    if shape(&p) != shape(cfg) {
        return Err(r.err(
            "importances.beeg_model_config",
            VizProblem::ConfigMismatch {
                payload: Box::new(shape(&p)),
                model: Box::new(shape(cfg)),
            },
        ));
    }
    Ok(())
}

/// Reads `viz_data.pt` and maps it to a circuit file for `target`'s model. The result is validated against the
/// model's config.
pub fn import_viz_data(path: &Path, target: &ImportTarget, task: &str) -> Result<CircuitFile> {
    let (zip, root) = TorchZip::open(path)?;
    let mut r = Reader { zip };
    let cfg = target.config;
    if root.as_dict().is_none() {
        return Err(r.err(
            "<top>",
            VizProblem::ExpectedDict {
                found: root.type_name(),
            },
        ));
    }

    // Nodes, in file order per location.
    let circuit_data = r.required(&root, "circuit_data", "<top>")?;
    let mut nodes_by_loc: Vec<(String, Vec<NodeId>)> = Vec::new();
    for (k, v) in r.dict(circuit_data, "circuit_data")? {
        let loc = r.key_str(k, "circuit_data")?.to_string();
        if !matches!(v, Py::Tensor(_) | Py::List(_) | Py::Tuple(_)) {
            continue; // e.g. prune_config
        }
        let at = format!("circuit_data.{loc}");
        let idx = r.ints(v, &at)?;
        let mut ids = Vec::with_capacity(idx.len());
        for i in idx {
            let i = usize::try_from(i).map_err(|_| r.err(&at, VizProblem::NegativeChannel { index: i }))?;
            ids.push(r.node(&loc, i, &at)?);
        }
        nodes_by_loc.push((loc, ids));
    }

    let importances = r.required(&root, "importances", "<top>")?;
    r.dict(importances, "importances")?;
    check_payload_config(&mut r, importances, cfg)?;
    let full = {
        let v = r.required(importances, "loss", "importances")?;
        r.number(v, "importances.loss")?
    };
    let circuit = {
        let v = r.required(importances, "interv_loss", "importances")?;
        r.number(v, "importances.interv_loss")?
    };

    // Per-node ablated losses.
    let mut ablated: BTreeMap<NodeId, f64> = BTreeMap::new();
    if let Some(ch) = importances.get("ch_interv_losses") {
        for (k, v) in r.dict(ch, "importances.ch_interv_losses")? {
            let loc = r.key_str(k, "importances.ch_interv_losses")?;
            let at = format!("importances.ch_interv_losses.{loc}");
            let losses = r.floats(v, &at)?;
            let Some((_, ids)) = nodes_by_loc.iter().find(|(l, _)| l == loc) else {
                return Err(r.err(&at, VizProblem::LocationNotInCircuit));
            };
            if losses.len() != ids.len() {
                return Err(r.err(
                    &at,
                    VizProblem::LossCount {
                        losses: losses.len(),
                        nodes: ids.len(),
                    },
                ));
            }
            for (id, l) in ids.iter().zip(losses) {
                ablated.insert(*id, l);
            }
        }
    }
    let mut all_nodes: Vec<NodeId> = nodes_by_loc.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
    all_nodes.sort_by_key(|n| n.forward_order());
    let nodes: Vec<CircuitNode> = all_nodes
        .iter()
        .map(|id| CircuitNode {
            id: *id,
            ablated_loss: ablated.get(id).copied(),
        })
        .collect();

    // Per-block ablated losses.
    let mut blocks = Vec::new();
    if let Some(layers) = importances.get("layer_interv_losses") {
        for (k, v) in r.dict(layers, "importances.layer_interv_losses")? {
            let name = r.key_str(k, "importances.layer_interv_losses")?;
            let at = format!("importances.layer_interv_losses.{name}");
            let block = name.parse().map_err(|e: BlockIdError| r.err(&at, e.into()))?;
            blocks.push(BlockLoss {
                block,
                ablated_loss: r.number(v, &at)?,
            });
        }
        blocks.sort_by_key(|b| b.block);
    }

    // Edges: ablation deltas, then weights.
    let mut edges: BTreeMap<(EdgeEnd, EdgeEnd), CircuitEdge> = BTreeMap::new();
    for (key, is_weight) in [("pair_data", false), ("pair_data_connections", true)] {
        let Some(list) = importances.get(key) else {
            continue;
        };
        let at0 = format!("importances.{key}");
        let items = r.seq(list, &at0)?.to_vec();
        for (pi, item) in items.iter().enumerate() {
            let at = format!("{at0}[{pi}]");
            let parts = r.seq(item, &at)?;
            let [w, src_names, tgt_names, locs] = parts else {
                return Err(r.err(&at, VizProblem::PairArity { found: parts.len() }));
            };
            let (shape, data) = r.tensor(w, &at)?;
            let values = data.to_f64();
            let loc_pair = r.seq(locs, &at)?;
            let [src_loc, tgt_loc] = loc_pair else {
                return Err(r.err(&at, VizProblem::ExpectedLocationPair));
            };
            let src_loc = src_loc
                .as_str()
                .ok_or_else(|| r.err(&at, VizProblem::LocationNotString { end: "source" }))?
                .to_string();
            let tgt_loc = tgt_loc
                .as_str()
                .ok_or_else(|| r.err(&at, VizProblem::LocationNotString { end: "target" }))?
                .to_string();
            let end = |r: &mut Reader, loc: &str, name: &Py| -> Result<EdgeEnd> {
                match name {
                    Py::Str(s) if s == "bias" => Ok(EdgeEnd::Bias),
                    other => {
                        let i = r.index(other, &at)?;
                        Ok(EdgeEnd::Node(r.node(loc, i, &at)?))
                    }
                }
            };
            let srcs = r.seq(src_names, &at)?.to_vec();
            let tgts = r.seq(tgt_names, &at)?.to_vec();
            if shape != [srcs.len(), tgts.len()] {
                return Err(r.err(
                    &at,
                    VizProblem::PairShape {
                        shape,
                        sources: srcs.len(),
                        targets: tgts.len(),
                    },
                ));
            }
            let srcs: Vec<EdgeEnd> = srcs.iter().map(|s| end(&mut r, &src_loc, s)).collect::<Result<_>>()?;
            let tgts: Vec<EdgeEnd> = tgts.iter().map(|t| end(&mut r, &tgt_loc, t)).collect::<Result<_>>()?;
            for (i, s) in srcs.iter().enumerate() {
                for (j, t) in tgts.iter().enumerate() {
                    let x = values[i * tgts.len() + j];
                    if x == 0.0 {
                        continue;
                    }
                    let e = edges.entry((*s, *t)).or_insert(CircuitEdge {
                        source: *s,
                        target: *t,
                        weight: None,
                        ablation_delta: None,
                    });
                    if is_weight {
                        e.weight = Some(x);
                    } else {
                        e.ablation_delta = Some(x);
                    }
                }
            }
        }
    }

    // Task samples.
    let task_samples = match importances.get("task_samples") {
        None | Some(Py::None) => None,
        Some(ts) => {
            let at = "importances.task_samples";
            let parts = r.seq(ts, at)?;
            let [toks, acts] = parts else {
                return Err(r.err(at, VizProblem::ExpectedTaskSamples));
            };
            let (shape, data) = r.tensor(toks, at)?;
            let [rows, cols] = shape[..] else {
                return Err(r.err(at, VizProblem::TokenShape { shape }));
            };
            let flat: Vec<u32> = data
                .to_i64()
                .ok_or_else(|| r.err(at, VizProblem::TokensNotIntegers))?
                .into_iter()
                .map(|t| u32::try_from(t).map_err(|_| r.err(at, VizProblem::TokenOutOfRange { token: t })))
                .collect::<Result<_>>()?;
            let tokens: Vec<Vec<u32>> = flat.chunks(cols.max(1)).take(rows).map(<[u32]>::to_vec).collect();
            let mut node_acts = BTreeMap::new();
            for (k, per_ch) in r.dict(acts, at)? {
                let loc = r.key_str(k, at)?.to_string();
                let at_loc = format!("{at}.{loc}");
                for (ch, t) in r.dict(per_ch, &at_loc)? {
                    let c = r.index(ch, &at_loc)?;
                    let id = r.node(&loc, c, &at_loc)?;
                    let at_ch = format!("{at_loc}.{c}");
                    let (s, d) = r.tensor(t, &at_ch)?;
                    if s != shape {
                        return Err(r.err(&at_ch, VizProblem::ActivationShape { acts: s, tokens: shape }));
                    }
                    let vals: Vec<f32> = d.to_f64().into_iter().map(|x| x as f32).collect();
                    node_acts.insert(id, vals.chunks(cols.max(1)).take(rows).map(<[f32]>::to_vec).collect());
                }
            }
            Some(TaskSamples {
                tokens,
                acts: node_acts,
            })
        }
    };

    // Pretraining exemplars.
    let exemplars = match root.get("samples") {
        None | Some(Py::None) => None,
        Some(samples) => {
            let mut out: BTreeMap<NodeId, Vec<QuantileExemplars>> = BTreeMap::new();
            for (k, per_ch) in r.dict(samples, "samples")? {
                let loc = r.key_str(k, "samples")?.to_string();
                let at_loc = format!("samples.{loc}");
                for (ch, per_q) in r.dict(per_ch, &at_loc)? {
                    let c = r.index(ch, &at_loc)?;
                    let id = r.node(&loc, c, &at_loc)?;
                    let at_ch = format!("{at_loc}.{c}");
                    let mut qs = Vec::new();
                    for (q, sides) in r.dict(per_q, &at_ch)? {
                        let quantile = r.number(q, &at_ch)?;
                        let at_q = format!("{at_ch}.{quantile}");
                        let parts = r.seq(sides, &at_q)?;
                        let [bottom, top] = parts else {
                            return Err(r.err(&at_q, VizProblem::ExpectedQuantileSides));
                        };
                        let read_side = |r: &mut Reader, side: &Py, name: &str| -> Result<Vec<Exemplar>> {
                            let at_s = format!("{at_q}.{name}");
                            let items = r.seq(side, &at_s)?.to_vec();
                            items
                                .iter()
                                .map(|it| {
                                    let parts = r.seq(it, &at_s)?;
                                    let [toks, acts, pos] = parts else {
                                        return Err(r.err(&at_s, VizProblem::ExpectedExemplar));
                                    };
                                    let tokens = r.tokens(toks, &at_s)?;
                                    let acts: Vec<f32> = r.floats(acts, &at_s)?.into_iter().map(|x| x as f32).collect();
                                    let pivot = r.index(pos, &at_s)?;
                                    if acts.len() != tokens.len() || pivot >= tokens.len() {
                                        return Err(r.err(
                                            &at_s,
                                            VizProblem::ExemplarShape {
                                                tokens: tokens.len(),
                                                acts: acts.len(),
                                                pivot,
                                            },
                                        ));
                                    }
                                    Ok(Exemplar { tokens, acts, pivot })
                                })
                                .collect()
                        };
                        let bottom = read_side(&mut r, bottom, "bottom")?;
                        let top = read_side(&mut r, top, "top")?;
                        qs.push(QuantileExemplars { quantile, bottom, top });
                    }
                    qs.sort_by(|a, b| a.quantile.total_cmp(&b.quantile));
                    out.insert(id, qs);
                }
            }
            Some(out)
        }
    };

    // Loss curve.
    let mut loss_curve = Vec::new();
    if let Some(all) = root.get("all_loss") {
        for (i, item) in r.seq(all, "all_loss")?.to_vec().iter().enumerate() {
            let at = format!("all_loss[{i}]");
            let parts = r.seq(item, &at)?;
            let [it, loss] = parts else {
                return Err(r.err(&at, VizProblem::ExpectedLossPoint));
            };
            let it = r.index(it, &at)?;
            loss_curve.push((it, r.number(loss, &at)?));
        }
    }

    // prune_config: top level, else the copy inside circuit_data.
    let prune_config = match root
        .get("prune_config")
        .filter(|v| !matches!(v, Py::None))
        .or_else(|| circuit_data.get("prune_config"))
    {
        Some(v) => Some(py_to_json(&mut r, v, "prune_config")?),
        None => None,
    };

    let num_total_nodes = match root.get("num_total_nodes") {
        Some(v) => r.index(v, "num_total_nodes")?,
        None => cfg.num_nodes(),
    };

    let mut file = CircuitFile::new(
        ModelRef {
            fingerprint: target.fingerprint.clone(),
            name: target.name.clone(),
            path: target.path.clone(),
            num_total_nodes,
        },
        task,
        "import:viz_data.pt",
    );
    file.losses.full = full;
    file.losses.circuit = circuit;
    file.nodes = nodes;
    file.blocks = blocks;
    file.edges = edges.into_values().collect();
    file.prune_config = prune_config;
    file.loss_curve = loss_curve;
    file.task_samples = task_samples;
    file.exemplars = exemplars;
    file.validate(cfg).map_err(|e| CircuitError::Structure {
        path: path.to_path_buf(),
        at: "<model check>".into(),
        problem: Box::new(VizProblem::Invalid(Box::new(e))),
    })?;
    Ok(file)
}

/// The number of `pair_data` entries in a payload (for checks against the reference).
pub fn count_pair_data(path: &Path) -> Result<usize> {
    let (zip, root) = TorchZip::open(path)?;
    let r = Reader { zip };
    let importances = r.required(&root, "importances", "<top>")?;
    Ok(match importances.get("pair_data") {
        Some(v) => r.seq(v, "importances.pair_data")?.len(),
        None => 0,
    })
}
