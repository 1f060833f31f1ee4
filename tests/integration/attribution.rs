//! Attribution graphs are exact: on the bundled weight-sparse model and on the Hugging Face GPT-2 fixture, every
//! node's incoming edges plus its bias sum to its input as the model computes it (the channel's value before
//! AbsTopK; before the nonlinearity for MLP neurons), and a target's inputs sum to its logit (difference).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use circuitscope::analysis::attribution::{
    build, prune, AttributionGraph, NodeKind, PruneOptions, TargetSpec, Targets,
};
use circuitscope::circuit::Site;
use circuitscope::model::config::Activation;
use circuitscope::model::{Gpt, LoadOptions};
use circuitscope::tokenize::Tokenizer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bundled() -> (Gpt, Tokenizer) {
    let dir = root().join("assets/models/tinypython-sparse");
    let (m, _) = Gpt::load(&dir, LoadOptions::default()).unwrap();
    (m, Tokenizer::load(dir.join("tokenizer.json")).unwrap())
}

fn gpt2_tiny() -> Gpt {
    Gpt::load(&root().join("../shared/fixtures/hf-gpt2/tiny"), LoadOptions::default())
        .unwrap()
        .0
}

fn act(kind: Activation, x: f64) -> f64 {
    let t = Tensor::new(&[x as f32], &Device::Cpu).unwrap();
    let y = match kind {
        Activation::Gelu => t.gelu_erf().unwrap(),
        Activation::GeluNew => t.gelu().unwrap(),
        Activation::Relu => t.relu().unwrap(),
    };
    y.to_vec1::<f32>().unwrap()[0] as f64
}

/// Checks every node's input against the model's value; returns how many nodes were checked.
#[track_caller]
fn assert_exact(model: &Gpt, g: &AttributionGraph) -> usize {
    let inputs = g.inputs();
    let mut checked = 0;
    let mut into = vec![0usize; g.nodes.len()];
    for e in &g.edges {
        into[e.dst as usize] += 1;
        assert!(e.src < e.dst, "edge {} -> {} runs backwards", e.src, e.dst);
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if n.is_source() {
            assert_eq!(into[i], 0, "{} is a source but has inputs", n.id());
            continue;
        }
        let want = n.activation as f64;
        let got = match &n.kind {
            NodeKind::Channel { node } if node.site == Site::MlpPostAct => act(model.config.activation_type, inputs[i]),
            _ => inputs[i],
        };
        let tol = 2e-4 * want.abs().max(1.0);
        assert!(
            (got - want).abs() <= tol,
            "{}: edges + bias give {got}, the model computed {want} ({} inputs)",
            n.id(),
            into[i]
        );
        checked += 1;
    }
    checked
}

const PROMPT: &str = "def f(xs):\n    total = 0\n    for x in xs:\n        if x == \"a\":\n            total += 1\n    return (total, [x for x in xs])\n";

#[test]
fn bundled_sparse_graph_is_exact() {
    let (m, tok) = bundled();
    let ids = tok.encode(PROMPT).unwrap();
    assert!(ids.len() >= 20, "prompt has {} tokens", ids.len());
    let g = build(&m, &ids, &Targets::default()).unwrap();
    let logits = g.logit_nodes();
    assert!(!logits.is_empty() && logits.len() <= 10);
    let total: f32 = logits.iter().map(|&i| g.nodes[i].target_weight()).sum();
    assert!(total > 0.0 && total <= 1.0 + 1e-5);
    // Every site the graph uses has nodes, with the AbsTopK budget (a quarter of each width) at most.
    for site in circuitscope::analysis::attribution::BLOCK_NODE_SITES {
        let n = g
            .nodes
            .iter()
            .filter(|n| n.pos == 3 && n.channel().is_some_and(|c| c.site == site && c.layer == Some(1)))
            .count();
        assert!(
            n > 0 && n <= site.width(&m.config).unwrap() / 4,
            "{site:?}: {n} nodes at position 3"
        );
    }
    let checked = assert_exact(&m, &g);
    assert!(checked > 1000, "{checked} nodes checked");
    // A logit difference: its inputs sum to logit(A) − logit(B).
    let (a, b) = (tok.encode(")").unwrap()[0], tok.encode("]").unwrap()[0]);
    let spec = TargetSpec {
        token: a,
        alt: Some(b),
        weight: 1.0,
    };
    let g = build(&m, &ids, &Targets::Given(vec![spec])).unwrap();
    assert_exact(&m, &g);
    let li = g.logit_nodes()[0];
    assert_eq!(g.nodes[li].id(), format!("logit[{a}-{b}]@{}", ids.len() - 1));
}

#[test]
fn gpt2_graph_is_exact() {
    // LayerNorm (centring), gelu_new, dense weights, no AbsTopK, tied unembedding.
    let m = gpt2_tiny();
    let ids: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 256).collect();
    let g = build(&m, &ids, &Targets::default()).unwrap();
    let checked = assert_exact(&m, &g);
    assert!(checked > 500, "{checked} nodes checked");
    let spec = TargetSpec {
        token: 7,
        alt: Some(9),
        weight: 1.0,
    };
    let g = build(&m, &ids, &Targets::Given(vec![spec])).unwrap();
    assert_exact(&m, &g);
}

#[test]
fn pruned_graph_keeps_the_targets_and_reports_completeness() {
    let (m, tok) = bundled();
    let ids = tok.encode(PROMPT).unwrap();
    let g = build(&m, &ids, &Targets::default()).unwrap();
    let p = prune(&g, PruneOptions::default());
    for i in g.logit_nodes() {
        assert!(p.keep_node[i]);
    }
    assert!(
        p.kept_nodes() < g.nodes.len() / 2,
        "{} of {}",
        p.kept_nodes(),
        g.nodes.len()
    );
    assert!(
        p.completeness > 0.0 && p.completeness <= 1.0 + 1e-9,
        "{}",
        p.completeness
    );
    assert!(p.node_influence_kept >= 0.8 - 1e-6);
    // Every kept edge joins kept nodes, and every kept non-target has a way out.
    for (e, _) in g.edges.iter().zip(&p.keep_edge).filter(|(_, &k)| k) {
        assert!(p.keep_node[e.src as usize] && p.keep_node[e.dst as usize]);
    }
    // Keeping everything explains everything.
    let all = prune(
        &g,
        PruneOptions {
            node_threshold: 1.0,
            edge_threshold: 1.0,
        },
    );
    assert!(all.completeness > 0.999, "{}", all.completeness);
    assert!(all.completeness >= p.completeness);
}

#[test]
fn unsupported_and_bad_input_are_errors() {
    let (m, _) = bundled();
    assert!(build(&m, &[], &Targets::default()).is_err());
    let bad = TargetSpec {
        token: 5000,
        alt: None,
        weight: 1.0,
    };
    let e = build(&m, &[1, 2, 3], &Targets::Given(vec![bad])).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
    let e = build(&m, &[1, 5000], &Targets::default()).unwrap_err();
    assert!(e.to_string().contains("5000"), "{e}");
}

fn reference(variant: &str) -> Gpt {
    Gpt::load(
        &root().join("tests/fixtures/reference-gpt").join(variant),
        LoadOptions::default(),
    )
    .unwrap()
    .0
}

#[test]
fn reference_fixture_graphs_are_exact() {
    // LayerNorm + tied unembedding + ReLU MLP; and a ReLU residual with AbsTopK on it (frozen masks), d_head ≠
    // d_model / n_head, sinks.
    let ids: Vec<u32> = (0..20).map(|i| (i * 13 + 3) % 128).collect();
    for variant in ["layernorm_tied_relu", "dhead_resid_relu", "rms_sink_topk_bigram"] {
        let m = reference(variant);
        let g = build(&m, &ids, &Targets::default()).unwrap();
        let checked = assert_exact(&m, &g);
        assert!(checked > 100, "{variant}: {checked} nodes checked");
    }
    // The cat-pos-emb variant feeds positional channels beside the residual: refused, with the reason.
    let e = build(&reference("cat_pos_emb"), &ids, &Targets::default()).unwrap_err();
    assert!(e.to_string().contains("cat-pos-emb"), "{e}");
}

mod graph_file {
    use super::*;
    use circuitscope::export::neuronpedia::{check_schema, parse, to_file, ExportInfo};

    fn exported() -> (AttributionGraph, String) {
        let (m, tok) = bundled();
        let ids = tok.encode(PROMPT).unwrap();
        let g = build(&m, &ids, &Targets::default()).unwrap();
        let p = prune(&g, PruneOptions::default());
        let kept: Vec<String> = (0..g.nodes.len())
            .filter(|&i| p.keep_node[i] && g.nodes[i].channel().is_some())
            .map(|i| g.nodes[i].id())
            .take(3)
            .collect();
        let label = |n: &circuitscope::analysis::attribution::AttrNode| format!("label of {}", n.id());
        let file = to_file(
            &g,
            &p,
            ExportInfo {
                slug: "test".into(),
                scan: "tinypython-sparse".into(),
                prompt: PROMPT.into(),
                prompt_tokens: ids.iter().map(|&i| tok.token_display(i)).collect(),
                label: &label,
                opts: PruneOptions::default(),
                top: Some((10, 0.95)),
                pinned: kept[..2].to_vec(),
                supernodes: vec![vec!["pair".into(), kept[1].clone(), kept[2].clone()]],
            },
        );
        (g, serde_json::to_string(&file).unwrap())
    }

    #[test]
    fn export_passes_the_schema_and_round_trips() {
        let (g, text) = exported();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        check_schema(&doc).unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(back.q_params.pinned_ids.len(), 2);
        assert_eq!(back.q_params.supernodes[0][0], "pair");
        // Every node id in the file is one of the graph's, channels parse as positioned node ids.
        for n in &back.nodes {
            assert!(g.index_of(&n.node_id).is_some(), "{}", n.node_id);
            if n.feature_type.contains('.') || n.feature_type == "final_resid" {
                assert!(circuitscope::export::neuronpedia::GraphFile::channel(&n.node_id).is_some());
            }
        }
        // A kept node whose inputs were all kept sums to its value again from the file alone.
        let inputs = back.inputs();
        let full = g.inputs();
        let in_file: std::collections::HashSet<&str> = back.nodes.iter().map(|n| n.node_id.as_str()).collect();
        let mut whole = 0;
        for (i, n) in g.nodes.iter().enumerate() {
            let id = n.id();
            if !in_file.contains(id.as_str()) || n.is_source() {
                continue;
            }
            let all_kept = g.edges.iter().filter(|e| e.dst as usize == i).all(|e| {
                back.links
                    .iter()
                    .any(|l| l.target == id && l.source == g.nodes[e.src as usize].id())
            });
            if all_kept {
                assert!((inputs[&id] - full[i]).abs() < 1e-3 * full[i].abs().max(1.0), "{id}");
                whole += 1;
            }
        }
        assert!(whole > 0);
    }

    #[test]
    fn bad_files_are_refused_with_where() {
        let (_, text) = exported();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["nodes"][2].as_object_mut().unwrap().remove("ctx_idx");
        let e = check_schema(&doc).unwrap_err();
        assert!(e.contains("nodes[2]") && e.contains("ctx_idx"), "{e}");
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["links"][0]["source"] = "nowhere@0".into();
        let e = parse(&doc.to_string()).unwrap_err();
        assert!(e.contains("links[0]") && e.contains("nowhere@0"), "{e}");
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["metadata"]["circuitscope"]["format_version"] = 99.into();
        assert!(parse(&doc.to_string()).unwrap_err().contains("newer"));
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc.as_object_mut().unwrap().remove("qParams");
        assert!(check_schema(&doc).unwrap_err().contains("qParams"));
        assert!(parse("{").unwrap_err().contains("not JSON"));
    }
}

mod patching {
    use super::*;
    use circuitscope::analysis::attribution::patching::{compare, compare_with, record_node_sites};

    #[test]
    fn attribution_patching_agrees_with_activation_patching_on_small_changes() {
        // The toy case where the linear prediction must hold: corrupted values a tiny step from the clean ones,
        // at active channels (no AbsTopK selection flips).
        let m = gpt2_tiny();
        let ids: Vec<u32> = (0..10).map(|i| (i * 29 + 11) % 256).collect();
        let mut rec = record_node_sites(&m, &ids).unwrap();
        let mut k = 0u32;
        for (name, (_, v)) in rec.hooks.iter_mut() {
            if name.contains("attn.q") || name.contains("attn.k") {
                continue;
            }
            for x in v.iter_mut() {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if *x != 0.0 && k.is_multiple_of(7) {
                    *x += if (k >> 9) & 1 == 0 { 1e-2 } else { -1e-2 };
                }
            }
        }
        let r = compare_with(&m, &ids, &rec, (7, Some(9)), 150).unwrap();
        assert_eq!(r.nodes.len(), 150);
        for n in &r.nodes {
            let tol = 2e-4 + 0.05 * n.patching.abs();
            assert!(
                (n.attribution - n.patching).abs() < tol,
                "{}: {} vs {}",
                n.node,
                n.attribution,
                n.patching
            );
        }
        // Ranks among the nodes whose effect stands above the float noise of a logit.
        let (a, p): (Vec<f64>, Vec<f64>) = r
            .nodes
            .iter()
            .filter(|n| n.patching.abs() > 1e-4)
            .map(|n| (n.attribution as f64, n.patching as f64))
            .unzip();
        assert!(a.len() > 30, "{} nodes above the noise", a.len());
        let rho = circuitscope::analysis::attribution::patching::spearman(&a, &p);
        assert!(
            rho > 0.95,
            "spearman {rho} over {} nodes (all: {})",
            a.len(),
            r.spearman
        );
    }

    #[test]
    fn task_pair_comparison_runs_and_checks_lengths() {
        let (m, tok) = bundled();
        let task = circuitscope::data::tasks::lookup("bracket_counting").unwrap();
        let pair = circuitscope::data::tasks::split(task.as_ref(), circuitscope::data::tasks::Split::Test, 1).remove(0);
        let (c, k) = (tok.encode(&pair.prompt).unwrap(), tok.encode(&pair.prompt_alt).unwrap());
        let a = tok.encode(&pair.target).unwrap()[0];
        let b = pair.alt.as_deref().map(|s| tok.encode(s).unwrap()[0]);
        if c.len() == k.len() {
            let r = compare(&m, &c, &k, (a, b), 40).unwrap();
            assert!(r.nodes.len() <= 40 && !r.nodes.is_empty());
            assert!((-1.0..=1.0).contains(&r.spearman));
            // Patching every differing node at once is not what this measures, but each single patch moves the
            // metric by a finite amount.
            assert!(r
                .nodes
                .iter()
                .all(|n| n.patching.is_finite() && n.attribution.is_finite()));
        }
        let e = compare(&m, &c, &c[..c.len() - 1], (a, b), 10).unwrap_err();
        assert!(e.to_string().contains("same non-zero length"), "{e}");
    }
}

mod command {
    use super::*;

    use crate::common::cli_parts as cli;

    #[test]
    fn attribute_writes_a_graph_and_show_reads_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let out = dir.path().join("graph.json");
        let model = root().join("assets/models/tinypython-sparse");
        let (ok, stdout, stderr) = cli(&[
            "attribute",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            PROMPT,
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for key in [
            "model",
            "prompt",
            "tokens",
            "targets",
            "full_nodes",
            "full_edges",
            "kept_nodes",
            "kept_edges",
            "completeness",
            "node_influence_kept",
            "node_threshold",
            "edge_threshold",
            "build_ms",
            "prune_ms",
            "top_nodes",
            "output",
            "output_bytes",
            "patching",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(
            v["output_bytes"].as_u64().unwrap(),
            std::fs::metadata(&out).unwrap().len()
        );
        let (ok, stdout, stderr) = cli(&["attribute", "show", out.to_str().unwrap(), "--json"]);
        assert!(ok, "{stderr}");
        let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(s["nodes"], v["kept_nodes"]);
        assert_eq!(s["links"], v["kept_edges"]);
        let (ok, stdout, _) = cli(&["attribute", "show", out.to_str().unwrap()]);
        assert!(ok && stdout.contains("completeness"), "{stdout}");

        // A task pair: the target is the pair's logit difference, and patching is compared.
        let (ok, stdout, stderr) = cli(&[
            "attribute",
            "--model",
            model.to_str().unwrap(),
            "--task",
            "bracket_counting",
            "--pair",
            "0",
            "--max-patch",
            "30",
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["targets"].as_array().unwrap().len(), 1);
        assert!(v["targets"][0]["alt"].is_u64());
        if !v["patching"].is_null() {
            assert!(v["patching"]["spearman"].is_number());
        }
    }

    #[test]
    fn check_measures_patching_and_circuit_recovery_per_task() {
        let model = root().join("assets/models/tinypython-sparse");
        let m = model.to_str().unwrap();
        let circuits = root().join("assets/circuits/tinypython-sparse");
        let (ok, stdout, stderr) = cli(&[
            "attribute",
            "check",
            "--model",
            m,
            "--circuits",
            circuits.to_str().unwrap(),
            "--tasks",
            "single_double_quote",
            "--pairs",
            "2",
            "--max-patch",
            "20",
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let t = &v["tasks"][0];
        assert_eq!(t["task"], "single_double_quote");
        assert_eq!(t["per_pair"].as_array().unwrap().len(), 2);
        assert_eq!(t["patched_pairs"], 2);
        for key in ["spearman_mean", "spearman_abs_mean", "recovery_mean", "recovery_union"] {
            let x = t[key].as_f64().unwrap_or_else(|| panic!("{key}: {t}"));
            assert!((-1.0..=1.0).contains(&x), "{key} {x}");
        }
        let important = t["important_nodes"].as_u64().unwrap();
        assert!(important > 0);
        for p in t["per_pair"].as_array().unwrap() {
            assert!(p["recovered"].as_u64().unwrap() <= important);
            assert_eq!(p["compared"].as_u64(), Some(20));
        }
        // The union of the pairs' graphs recovers at least what the mean pair does.
        assert!(t["recovery_union"].as_f64().unwrap() >= t["recovery_mean"].as_f64().unwrap());

        // A circuit of another model, and a folder with no circuits, are one-line errors.
        let dense = root().join("assets/circuits/tinypython-dense");
        crate::common::cli_err(
            &[
                "attribute",
                "check",
                "--model",
                m,
                "--circuits",
                dense.to_str().unwrap(),
                "--pairs",
                "1",
            ],
            &["tinypython-dense", "was made for model"],
        );
        let empty = tempfile::TempDir::new().unwrap();
        crate::common::cli_err(
            &[
                "attribute",
                "check",
                "--model",
                m,
                "--circuits",
                empty.path().to_str().unwrap(),
            ],
            &["no <task>.json circuit files"],
        );
    }

    #[test]
    fn attribute_errors_are_one_line() {
        let model = root().join("assets/models/tinypython-sparse");
        let m = model.to_str().unwrap();
        for (args, needle) in [
            (vec!["attribute", "--prompt", "x"], "--model"),
            (vec!["attribute", "--model", m], "--prompt"),
            (
                vec!["attribute", "--model", m, "--prompt", "x = 1", "--target", "#99999"],
                "outside the vocabulary",
            ),
            (
                vec!["attribute", "--model", m, "--prompt", "x", "--node-threshold", "2"],
                "between 0 and 1",
            ),
            (
                vec!["attribute", "--model", "/nonexistent", "--prompt", "x"],
                "/nonexistent",
            ),
            (vec!["attribute", "show", "/nonexistent.json"], "/nonexistent.json"),
        ] {
            let (ok, _, stderr) = cli(&args);
            assert!(!ok, "{args:?} succeeded");
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        }
    }
}
