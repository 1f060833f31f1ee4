//! Influence pruning (circuit-tracer's): with `Â` the row-normalised `|A|` (each node's absolute inputs
//! divided by their sum), a node's influence on the targets is `w · (Â + Â² + …)`, where `w` holds the targets'
//! weights. The nodes carrying `node_threshold` of the total influence are kept; on the graph they leave, the
//! edges carrying `edge_threshold` of the edge influence (`Â[t, s]` × t's influence, its own target weight
//! included); then nodes left without an outgoing edge (or, unless a source, an incoming one) are dropped.
//!
//! The graph is a DAG with its nodes in forward order, so `w · (Â + Â² + …)` is one backward sweep over the
//! edges sorted by target.

use super::build::{AttributionGraph, Edge};

/// The pruning thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    /// Keep the fewest nodes whose influence sums to this share of the total (0.8).
    pub node_threshold: f32,
    /// Keep the fewest edges whose influence sums to this share of the total (0.98).
    pub edge_threshold: f32,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            node_threshold: 0.8,
            edge_threshold: 0.98,
        }
    }
}

/// What pruning kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    /// Each node's influence on the targets in the full graph.
    pub influence: Vec<f64>,
    /// Which nodes are kept.
    pub keep_node: Vec<bool>,
    /// Which edges (of the graph's list) are kept.
    pub keep_edge: Vec<bool>,
    /// The share of the targets' normalised input that reaches the sources (embeddings, bigram row) along kept
    /// edges, relative to the full graph: 1 when the kept graph explains all of it.
    pub completeness: f64,
    /// The share of the total node influence the kept nodes carry.
    pub node_influence_kept: f64,
}

impl Pruned {
    /// Number of kept nodes.
    pub fn kept_nodes(&self) -> usize {
        self.keep_node.iter().filter(|&&k| k).count()
    }

    /// Number of kept edges.
    pub fn kept_edges(&self) -> usize {
        self.keep_edge.iter().filter(|&&k| k).count()
    }
}

/// `seed · (I + Â + Â² + …)` over the edges `live` lets through, with row sums `rows` (edges sorted by target,
/// sources below targets). Returns each node's total mass, its seed included.
fn propagate(edges: &[Edge], live: &[bool], rows: &[f64], seed: &[f64]) -> Vec<f64> {
    let mut mass = seed.to_vec();
    for (e, _) in edges.iter().zip(live).rev().filter(|(_, &l)| l) {
        let (s, t) = (e.src as usize, e.dst as usize);
        if rows[t] > 0.0 && mass[t] != 0.0 {
            mass[s] += mass[t] * (e.weight.abs() as f64) / rows[t];
        }
    }
    mass
}

/// Each node's sum of absolute incoming weights over the live edges.
fn row_sums(n: usize, edges: &[Edge], live: &[bool]) -> Vec<f64> {
    let mut rows = vec![0f64; n];
    for (e, _) in edges.iter().zip(live).filter(|(_, &l)| l) {
        rows[e.dst as usize] += e.weight.abs() as f64;
    }
    rows
}

/// The indices of `scores` sorted high to low whose running sum first reaches `threshold` of the total.
fn top_share(candidates: &[usize], scores: &[f64], threshold: f64) -> Vec<usize> {
    let mut order = candidates.to_vec();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let total: f64 = order.iter().map(|&i| scores[i]).sum();
    let mut out = Vec::new();
    let mut sum = 0.0;
    for i in order {
        if sum >= threshold * total || scores[i] <= 0.0 {
            break;
        }
        sum += scores[i];
        out.push(i);
    }
    out
}

/// Prunes a graph given as `n` nodes, its edges (sorted by target, each source below its target), each node's
/// target weight (0 except for targets) and which nodes are sources (kept whatever their influence, dropped only
/// as orphans).
pub fn prune_edges(n: usize, edges: &[Edge], target_weight: &[f64], is_source: &[bool], opts: PruneOptions) -> Pruned {
    debug_assert!(edges.windows(2).all(|w| w[0].dst <= w[1].dst));
    debug_assert!(edges.iter().all(|e| e.src < e.dst));
    let is_target: Vec<bool> = target_weight.iter().map(|&w| w > 0.0).collect();
    let all = vec![true; edges.len()];
    let rows = row_sums(n, edges, &all);
    let mass = propagate(edges, &all, &rows, target_weight);
    let influence: Vec<f64> = mass.iter().zip(target_weight).map(|(m, w)| m - w).collect();

    // Nodes: the targets and sources always; the others by influence.
    let candidates: Vec<usize> = (0..n).filter(|&i| !is_target[i] && !is_source[i]).collect();
    let mut keep_node: Vec<bool> = (0..n).map(|i| is_target[i] || is_source[i]).collect();
    for i in top_share(&candidates, &influence, opts.node_threshold as f64) {
        keep_node[i] = true;
    }
    let total_influence: f64 = candidates.iter().map(|&i| influence[i]).sum();
    let kept_influence: f64 = candidates
        .iter()
        .filter(|&&i| keep_node[i])
        .map(|&i| influence[i])
        .sum();

    // Edges between kept nodes, re-normalised on that graph, scored by their share of their target's influence.
    let live: Vec<bool> = edges
        .iter()
        .map(|e| keep_node[e.src as usize] && keep_node[e.dst as usize])
        .collect();
    let rows_kept = row_sums(n, edges, &live);
    let mass_kept = propagate(edges, &live, &rows_kept, target_weight);
    let scores: Vec<f64> = edges
        .iter()
        .zip(&live)
        .map(|(e, &l)| {
            let t = e.dst as usize;
            if l && rows_kept[t] > 0.0 {
                e.weight.abs() as f64 / rows_kept[t] * mass_kept[t]
            } else {
                0.0
            }
        })
        .collect();
    let live_idx: Vec<usize> = (0..edges.len()).filter(|&i| live[i]).collect();
    let mut keep_edge = vec![false; edges.len()];
    for i in top_share(&live_idx, &scores, opts.edge_threshold as f64) {
        keep_edge[i] = true;
    }

    // Orphans: a non-target without a kept outgoing edge, a non-source non-target without a kept incoming one.
    loop {
        let (mut outs, mut ins) = (vec![0usize; n], vec![0usize; n]);
        for (e, _) in edges.iter().zip(&keep_edge).filter(|(_, &k)| k) {
            outs[e.src as usize] += 1;
            ins[e.dst as usize] += 1;
        }
        let mut changed = false;
        for i in 0..n {
            if keep_node[i] && !is_target[i] && (outs[i] == 0 || (!is_source[i] && ins[i] == 0)) {
                keep_node[i] = false;
                changed = true;
            }
        }
        for (k, e) in keep_edge.iter_mut().zip(edges) {
            if *k && !(keep_node[e.src as usize] && keep_node[e.dst as usize]) {
                *k = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }

    // Completeness: the normalised input mass (full graph's row sums) reaching the sources along kept edges.
    let reach = |live: &[bool]| -> f64 {
        let m = propagate(edges, live, &rows, target_weight);
        (0..n).filter(|&i| is_source[i]).map(|i| m[i]).sum()
    };
    let full = reach(&all);
    let completeness = if full > 0.0 { reach(&keep_edge) / full } else { 0.0 };
    Pruned {
        influence,
        keep_node,
        keep_edge,
        completeness,
        node_influence_kept: if total_influence > 0.0 {
            kept_influence / total_influence
        } else {
            0.0
        },
    }
}

/// Prunes an attribution graph by its targets' influence.
pub fn prune(g: &AttributionGraph, opts: PruneOptions) -> Pruned {
    let w: Vec<f64> = g.nodes.iter().map(|n| n.target_weight() as f64).collect();
    let src: Vec<bool> = g.nodes.iter().map(|n| n.is_source()).collect();
    prune_edges(g.nodes.len(), &g.edges, &w, &src, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(src: u32, dst: u32, weight: f32) -> Edge {
        Edge { src, dst, weight }
    }

    /// Sources 0 and 1; middle nodes 2 (strong), 3 (weak), 4 (dead end: no path to the target); target 5.
    fn toy() -> (Vec<Edge>, Vec<f64>, Vec<bool>) {
        let mut edges = vec![
            e(0, 2, 3.0),
            e(1, 2, -1.0),
            e(1, 3, 2.0),
            e(0, 4, 5.0),
            e(2, 5, 9.0),
            e(3, 5, -1.0),
        ];
        edges.sort_by_key(|e| (e.dst, e.src));
        let w = vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let src = vec![true, true, false, false, false, false];
        (edges, w, src)
    }

    #[test]
    fn influence_is_the_series_of_the_normalised_matrix() {
        let (edges, w, src) = toy();
        let p = prune_edges(6, &edges, &w, &src, PruneOptions::default());
        // Â[5,2] = 0.9, Â[5,3] = 0.1; Â[2,0] = 0.75, Â[2,1] = 0.25; Â[3,1] = 1.
        let want = [0.9 * 0.75, 0.9 * 0.25 + 0.1, 0.9, 0.1, 0.0, 0.0];
        for (i, (&got, want)) in p.influence.iter().zip(want).enumerate() {
            assert!((got - want).abs() < 1e-9, "node {i}: {got} vs {want}");
        }
    }

    #[test]
    fn thresholds_keep_the_carriers_and_drop_orphans() {
        let (edges, w, src) = toy();
        let opts = PruneOptions {
            node_threshold: 0.8,
            edge_threshold: 0.98,
        };
        let p = prune_edges(6, &edges, &w, &src, opts);
        // Node 2 alone carries 0.9 of the influence of the middle nodes (1.0 in all).
        assert_eq!(p.keep_node, vec![true, true, true, false, false, true]);
        assert!((p.node_influence_kept - 0.9).abs() < 1e-9);
        // Kept edges: 0→2, 1→2, 2→5 (node 3's and node 4's edges go with them).
        let kept: Vec<(u32, u32)> = edges
            .iter()
            .zip(&p.keep_edge)
            .filter(|(_, &k)| k)
            .map(|(e, _)| (e.src, e.dst))
            .collect();
        assert_eq!(kept, vec![(0, 2), (1, 2), (2, 5)]);
        // Mass reaching the sources: 0.9 of 1.0 in the full graph.
        assert!((p.completeness - 0.9).abs() < 1e-9);

        // A tighter edge threshold: scores 2→5 1.0, 0→2 0.75, 1→2 0.25 of 2.0; 0.6 of it takes the first two,
        // and source 1, left without an outgoing edge, goes as an orphan.
        let opts = PruneOptions {
            node_threshold: 0.8,
            edge_threshold: 0.6,
        };
        let p = prune_edges(6, &edges, &w, &src, opts);
        let kept: Vec<(u32, u32)> = edges
            .iter()
            .zip(&p.keep_edge)
            .filter(|(_, &k)| k)
            .map(|(e, _)| (e.src, e.dst))
            .collect();
        assert_eq!(kept, vec![(0, 2), (2, 5)]);
        assert_eq!(p.keep_node, vec![true, false, true, false, false, true]);
        assert!((p.completeness - 0.675).abs() < 1e-9);
        // Everything goes when no edge is wanted: a middle node without inputs is an orphan too.
        let opts = PruneOptions {
            node_threshold: 0.8,
            edge_threshold: 0.0,
        };
        let p = prune_edges(6, &edges, &w, &src, opts);
        assert_eq!(p.kept_edges(), 0);
        assert_eq!(p.keep_node, vec![false, false, false, false, false, true]);
        assert_eq!(p.completeness, 0.0);
        let opts = PruneOptions {
            node_threshold: 1.0,
            edge_threshold: 1.0,
        };
        let p = prune_edges(6, &edges, &w, &src, opts);
        assert_eq!(p.keep_node, vec![true, true, true, true, false, true]);
        assert!((p.completeness - 1.0).abs() < 1e-9);
    }
}
