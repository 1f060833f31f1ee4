//! `circuit minimize`: a greedy pass over a pruned circuit that takes out what pruning left behind.
//!
//! Node masks leave prunable nodes in a circuit (the paper cleaned its circuits by hand). This pass removes nodes,
//! smallest ablation effect first, while the circuit's loss on held-out pairs stays at or under the target; it
//! re-measures the remaining nodes' effects after each sweep, since a node that was needed may stop being needed
//! once another is gone and the other way round. Then edge pruning: weight edges between the remaining nodes are
//! mean-ablated one at a time (weakest first) and stay out while the loss holds. Every removal is recorded with
//! the loss after it.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::ablate::{self, Means, NodeSet, TaskData, TaskEval};
use super::prune::{
    ablate_edges, circuit_weight_edges, diagnostics, edge_is_ablatable, Diagnose, Progress, PruneError,
};
use crate::circuit::{CircuitFile, NodeId, RemovedEdge};
use crate::model::{Checkpoint, Gpt, LoadOptions};

/// How far to minimise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MinimizeConfig {
    /// The circuit's loss (raw 2× scale, as pruning's target) must stay at or under this.
    pub target_loss: f64,
    /// Node sweeps at most; a sweep that removes nothing ends the node pass.
    pub sweeps: usize,
    /// Whether to prune weight edges after the nodes.
    pub edges: bool,
    /// Edge-ablation diagnostics are measured for at most this many weight edges of the result.
    pub max_edge_ablations: usize,
    /// When the circuit's loss on the held-out pairs is already over `target_loss` (pruning's bisection meets its
    /// target on the training pairs), hold it at that loss instead of refusing: nothing removed may make it worse.
    pub hold_if_above: bool,
}

impl Default for MinimizeConfig {
    fn default() -> Self {
        MinimizeConfig {
            target_loss: 0.15,
            sweeps: 3,
            edges: true,
            max_edge_ablations: 64,
            hold_if_above: false,
        }
    }
}

/// One removal and the circuit's loss right after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Removal {
    /// A node taken out (mean-ablated).
    Node {
        /// The node.
        node: NodeId,
        /// The circuit's loss (raw) after the removal.
        loss: f64,
    },
    /// A weight edge taken out (mean-ablated).
    Edge {
        /// Its upstream node.
        source: NodeId,
        /// Its downstream node.
        target: NodeId,
        /// The circuit's loss (raw) after the removal.
        loss: f64,
    },
}

/// What a minimisation did, as stored in the circuit file's `minimize` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinimizeRecord {
    /// The settings.
    pub config: MinimizeConfig,
    /// Held-out pairs every loss was measured on.
    pub pairs: usize,
    /// The circuit's loss before (raw).
    pub start_loss: f64,
    /// The circuit's loss after (raw).
    pub final_loss: f64,
    /// The circuit's accuracy after.
    pub final_accuracy: f64,
    /// Nodes before and after.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// Weight edges between circuit nodes before.
    pub edges_before: usize,
    /// Weight edges after (removed ones not counted).
    pub edges_after: usize,
    /// Node sweeps run.
    pub sweeps_run: usize,
    /// Every removal in order.
    pub removals: Vec<Removal>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What a minimisation needs.
pub struct MinimizeInput<'a> {
    /// The model the circuit belongs to.
    pub model: &'a Gpt,
    /// Its weights (edge ablations edit them).
    pub checkpoint: &'a Checkpoint,
    /// Held-out pairs: every loss is measured on them.
    pub data: TaskData,
    /// The values ablated nodes take.
    pub means: &'a Means,
}

/// Why a minimisation could not run.
#[derive(Debug, thiserror::Error)]
pub enum MinimizeError {
    /// Measuring failed.
    #[error(transparent)]
    Prune(#[from] PruneError),
    /// Measuring failed.
    #[error(transparent)]
    Ablate(#[from] ablate::AblateError),
    /// The model failed to build with edited weights.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The circuit misses the target before anything is removed.
    #[error(
        "the circuit's loss is {loss:.4} on {pairs} held-out pairs, already over the target {target:.4} \
         (raw scale); pass a --target-loss at or above it"
    )]
    AboveTarget {
        /// The circuit's loss.
        loss: f64,
        /// The target.
        target: f64,
        /// Pairs measured.
        pairs: usize,
    },
}

/// The circuit's loss with `nodes` kept, everything else mean-ablated, and the weight edges `removed` ablated.
fn circuit_eval(
    input: &MinimizeInput,
    nodes: &[NodeId],
    removed: &[(NodeId, NodeId)],
) -> Result<TaskEval, MinimizeError> {
    let cfg = &input.model.config;
    let complement = NodeSet::of(cfg, nodes).inverted();
    if removed.is_empty() {
        return Ok(ablate::evaluate(input.model, &input.data, &complement, input.means)?);
    }
    let ck = ablate_edges(input.checkpoint, cfg, removed, input.means)?;
    let edited = Gpt::from_checkpoint(cfg.clone(), &ck, LoadOptions::default())?;
    Ok(ablate::evaluate(&edited, &input.data, &complement, input.means)?)
}

/// Minimises `file`'s circuit; returns the new file (nodes, edges, diagnostics and losses re-measured on the
/// held-out pairs, sufficiency and necessity cleared until `circuit check` measures them) and the record.
pub fn minimize(
    input: &MinimizeInput,
    file: &CircuitFile,
    cfg: &MinimizeConfig,
    progress: &dyn Progress,
) -> Result<(CircuitFile, MinimizeRecord), MinimizeError> {
    let started = Instant::now();
    let model_cfg = &input.model.config;
    let mut removed: Vec<(NodeId, NodeId)> = file.removed_edges.iter().map(|e| (e.source, e.target)).collect();
    let mut nodes = file.node_ids();
    let start = circuit_eval(input, &nodes, &removed)?;
    let mut cfg = cfg.clone();
    if start.loss > cfg.target_loss && cfg.hold_if_above {
        progress.note(&format!(
            "the circuit's loss {:.4} is over the target {:.4}: holding it at {:.4}",
            start.loss, cfg.target_loss, start.loss
        ));
        cfg.target_loss = start.loss;
    }
    let cfg = &cfg;
    if start.loss > cfg.target_loss {
        return Err(MinimizeError::AboveTarget {
            loss: start.loss,
            target: cfg.target_loss,
            pairs: input.data.len(),
        });
    }
    let edges_before = circuit_weight_edges(&nodes, model_cfg, input.checkpoint)?
        .into_iter()
        .filter(|(s, t, _)| !removed.contains(&(*s, *t)))
        .count();
    let nodes_before = nodes.len();
    let mut removals = Vec::new();
    let mut current = start;

    // Node sweeps: the first in the order of the file's own ablation effects, later ones re-measured.
    let mut sweeps_run = 0;
    let mut order: Vec<(NodeId, f64)> = nodes
        .iter()
        .map(|n| (*n, file.node(n).and_then(|x| x.ablated_loss).unwrap_or(f64::INFINITY)))
        .collect();
    for sweep in 0..cfg.sweeps {
        if sweep > 0 {
            progress.phase(&format!("re-measure {} nodes", nodes.len()), nodes.len() as u64);
            order.clear();
            for n in &nodes {
                let without: Vec<NodeId> = nodes.iter().copied().filter(|x| x != n).collect();
                order.push((*n, circuit_eval(input, &without, &removed)?.loss));
                progress.step(&format!("{n}"));
            }
        }
        order.sort_by(|a, b| a.1.total_cmp(&b.1));
        sweeps_run += 1;
        progress.phase(&format!("node sweep {}", sweep + 1), order.len() as u64);
        let mut any = false;
        for (n, _) in &order {
            let without: Vec<NodeId> = nodes.iter().copied().filter(|x| x != n).collect();
            let kept_edges: Vec<(NodeId, NodeId)> = removed.iter().copied().filter(|(s, t)| s != n && t != n).collect();
            let e = circuit_eval(input, &without, &kept_edges)?;
            progress.step(&format!("{n}: loss {:.4}", e.loss));
            if e.loss <= cfg.target_loss {
                nodes = without;
                removed = kept_edges;
                current = e;
                any = true;
                removals.push(Removal::Node { node: *n, loss: e.loss });
                progress.note(&format!("removed {n}: loss {:.4}", e.loss));
            }
        }
        if !any {
            break;
        }
    }

    // Edge pruning over the weight edges that one weight carries, weakest first.
    if cfg.edges {
        let mut candidates: Vec<(NodeId, NodeId, f64)> = circuit_weight_edges(&nodes, model_cfg, input.checkpoint)?
            .into_iter()
            .filter(|(s, t, _)| !removed.contains(&(*s, *t)) && edge_is_ablatable(model_cfg, s, t))
            .collect();
        candidates.sort_by(|a, b| a.2.abs().total_cmp(&b.2.abs()));
        progress.phase(&format!("edges ({})", candidates.len()), candidates.len() as u64);
        for (s, t, _) in candidates {
            let mut with = removed.clone();
            with.push((s, t));
            let e = circuit_eval(input, &nodes, &with)?;
            progress.step(&format!("{s} -> {t}: loss {:.4}", e.loss));
            if e.loss <= cfg.target_loss {
                removed = with;
                current = e;
                removals.push(Removal::Edge {
                    source: s,
                    target: t,
                    loss: e.loss,
                });
            }
        }
    }

    nodes.sort_by_key(|n| n.forward_order());
    let (diag_nodes, blocks, edges) = diagnostics(
        &Diagnose {
            model: input.model,
            checkpoint: input.checkpoint,
            means: input.means,
            data: &input.data,
            circuit_loss: current.loss,
            max_edge_ablations: cfg.max_edge_ablations,
        },
        &nodes,
        &removed,
        progress,
    )?;
    let none = NodeSet::uniform(model_cfg, false);
    let full = ablate::evaluate(input.model, &input.data, &none, input.means)?;
    let mut out = file.clone();
    out.source = format!("{} + circuit minimize", file.source);
    out.nodes = diag_nodes;
    out.blocks = blocks;
    out.edges = edges;
    out.removed_edges = removed
        .iter()
        .map(|&(source, target)| RemovedEdge { source, target })
        .collect();
    out.losses.full = full.loss;
    out.losses.full_accuracy = Some(full.accuracy);
    out.losses.circuit = current.loss;
    out.losses.circuit_accuracy = Some(current.accuracy);
    // Measured for the old circuit: `circuit check` measures the new one.
    out.losses.calibrated = None;
    out.losses.sufficiency = None;
    out.losses.necessity = None;
    out.losses.sufficiency_accuracy = None;
    out.losses.necessity_accuracy = None;
    out.losses.check_pairs = None;
    // Samples and exemplars belong to nodes; keep only those of the remaining ones.
    if let Some(ex) = out.exemplars.as_mut() {
        ex.retain(|n, _| nodes.contains(n));
    }
    if let Some(ts) = out.task_samples.as_mut() {
        ts.acts.retain(|n, _| nodes.contains(n));
    }
    let record = MinimizeRecord {
        config: cfg.clone(),
        pairs: input.data.len(),
        start_loss: start.loss,
        final_loss: current.loss,
        final_accuracy: current.accuracy,
        nodes_before,
        nodes_after: nodes.len(),
        edges_before,
        edges_after: out.edges.len(),
        sweeps_run,
        removals,
        seconds: started.elapsed().as_secs_f64(),
    };
    out.minimize = Some(serde_json::to_value(&record).expect("the record serialises"));
    Ok((out, record))
}
