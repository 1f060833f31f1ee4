//! Circuit files, the circuit graph and the import of the reference viewer's viz_data.pt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use circuitscope::circuit::{
    import_viz_data, CircuitError, CircuitFile, CircuitGraph, EdgeEnd, EdgeKind, GraphNode, ImportTarget, NodeId,
    CIRCUIT_FORMAT_VERSION,
};
use circuitscope::cli::circuit::{load_model_parts, run_import, run_show, ImportVizArgs, ShowArgs};
use circuitscope::cli::convert::convert;
use circuitscope::model::{Checkpoint, Config, Stored};
use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model_dir() -> PathBuf {
    root().join("reference-gpt/rms_sink_topk_bigram")
}

fn viz() -> PathBuf {
    root().join("reference-viz/rms_sink_topk_bigram/viz_data.pt")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("reference-viz/rms_sink_topk_bigram/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn import() -> (CircuitFile, Config) {
    let m = load_model_parts(&model_dir()).unwrap();
    let target = ImportTarget {
        config: &m.config,
        fingerprint: m.fingerprint.clone(),
        name: Some("rms_sink_topk_bigram".into()),
        path: None,
    };
    let c = import_viz_data(&viz(), &target, "synthetic").unwrap();
    (c, m.config)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

#[test]
fn import_matches_expected() {
    let exp = expected();
    let (c, cfg) = import();
    c.validate(&cfg).unwrap();
    assert_eq!(c.model.num_total_nodes as u64, exp["num_total_nodes"].as_u64().unwrap());
    assert_eq!(c.model.num_total_nodes, cfg.num_nodes());
    assert!(close(c.losses.full, exp["loss_raw"].as_f64().unwrap()));
    assert!(close(c.losses.circuit, exp["interv_loss_raw"].as_f64().unwrap()));
    assert!(close(c.losses.halved().full, exp["loss_raw"].as_f64().unwrap() / 2.0));

    // circuit_data and ch_interv_losses, per location in order.
    let mut n_expected = 0;
    for (loc, idx) in exp["circuit_data"].as_object().unwrap() {
        let losses = exp["ch_interv_losses_raw"][loc].as_array().unwrap();
        let idx = idx.as_array().unwrap();
        assert_eq!(idx.len(), losses.len());
        for (i, l) in idx.iter().zip(losses) {
            let id = NodeId::from_hook(loc, i.as_u64().unwrap() as usize).unwrap();
            let node = c.node(&id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(close(node.ablated_loss.unwrap(), l.as_f64().unwrap()), "{id}");
            n_expected += 1;
        }
    }
    assert_eq!(c.nodes.len(), n_expected);

    let layers = exp["layer_interv_losses_raw"].as_object().unwrap();
    assert_eq!(c.blocks.len(), layers.len());
    for b in &c.blocks {
        assert!(
            close(b.ablated_loss, layers[&b.block.to_string()].as_f64().unwrap()),
            "{}",
            b.block
        );
    }

    assert_eq!(
        circuitscope::circuit::import_viz::count_pair_data(&viz()).unwrap() as u64,
        exp["n_pair_data"].as_u64().unwrap()
    );
    assert!(!c.edges.is_empty());
    for e in &c.edges {
        assert!(e.ablation_delta.is_some() || e.weight.is_some());
        assert!(matches!(e.target, EdgeEnd::Node(_)));
    }
    // pair_data_connections shares its name lists with pair_data: they must read back complete.
    assert!(c.edges.iter().any(|e| e.weight.is_some()));
    assert!(c.edges.iter().any(|e| e.source == EdgeEnd::Bias));

    let ts = c.task_samples.as_ref().unwrap();
    let shape = exp["task_samples_shape"].as_array().unwrap();
    assert_eq!(ts.tokens.len() as u64, shape[0].as_u64().unwrap());
    assert_eq!(ts.tokens[0].len() as u64, shape[1].as_u64().unwrap());
    assert_eq!(ts.acts.len(), n_expected);

    let last = exp["all_loss_last"].as_array().unwrap();
    let (it, loss) = *c.loss_curve.last().unwrap();
    assert_eq!(it as u64, last[0].as_u64().unwrap());
    assert!(close(loss, last[1].as_f64().unwrap()));

    let pc = c.prune_config.as_ref().unwrap();
    assert!(pc.get("k_coef").is_some(), "{pc}");

    let ex = c.exemplars.as_ref().unwrap();
    assert_eq!(ex.len(), n_expected);
    let qs = ex.values().next().unwrap();
    assert_eq!(
        qs.iter().map(|q| q.quantile).collect::<Vec<_>>(),
        vec![0.001, 0.01, 0.1, 0.5]
    );
    assert!(!qs[0].top.is_empty() && !qs[0].bottom.is_empty());
}

#[test]
fn circuit_file_round_trip_and_versions() {
    let (c, _) = import();
    let dir = TempDir::new().unwrap();
    let p = dir.path().join("c.json");
    c.save(&p).unwrap();
    let back = CircuitFile::load(&p).unwrap();
    assert_eq!(back, c);
    // Stable output.
    let text = std::fs::read_to_string(&p).unwrap();
    back.save(&p).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["format_version"] = (CIRCUIT_FORMAT_VERSION + 1).into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = CircuitFile::load(&p).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CircuitError::NewerVersion { .. }), "{msg}");
    assert!(msg.contains("newer") && msg.contains("c.json"), "{msg}");

    std::fs::write(&p, "{\"format_version\": 1, \"nodes\": 3").unwrap();
    let msg = CircuitFile::load(&p).unwrap_err().to_string();
    assert!(msg.contains("c.json") && !msg.contains('\n'), "{msg}");

    let msg = CircuitFile::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.json"), "{msg}");
}

#[test]
fn unknown_nodes_are_refused() {
    let (mut c, cfg) = import();
    c.nodes.push(circuitscope::circuit::CircuitNode {
        id: "7.mlp.post_act[3]".parse().unwrap(),
        ablated_loss: None,
    });
    let msg = c.validate(&cfg).unwrap_err().to_string();
    assert!(msg.contains("7.mlp.post_act[3]") && msg.contains("layer 7"), "{msg}");
    c.nodes.pop();
    c.nodes.push(circuitscope::circuit::CircuitNode {
        id: "0.mlp.post_act[64]".parse().unwrap(),
        ablated_loss: None,
    });
    let msg = c.validate(&cfg).unwrap_err().to_string();
    assert!(msg.contains("out of range") && msg.contains("64 channels"), "{msg}");
}

#[test]
fn fingerprint_and_model_check() {
    let dir = TempDir::new().unwrap();
    let a = load_model_parts(&model_dir()).unwrap();
    let (dense, csr) = (dir.path().join("dense"), dir.path().join("csr"));
    convert(&model_dir(), &dense, 1e-9, false).unwrap();
    convert(&model_dir(), &csr, 1.0, false).unwrap();
    let b = load_model_parts(&dense).unwrap();
    let c = load_model_parts(&csr).unwrap();
    assert!(c.ckpt.tensors.values().any(|s| matches!(s, Stored::Csr(_))));
    assert_eq!(a.fingerprint.len(), 16);
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, c.fingerprint);
    let other = load_model_parts(&root().join("reference-gpt/layernorm_tied_relu")).unwrap();
    assert_ne!(a.fingerprint, other.fingerprint);

    let (circ, _) = import();
    circ.check_model(&b.fingerprint).unwrap();
    let msg = circ.check_model(&other.fingerprint).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("was made for model rms_sink_topk_bigram ({})", a.fingerprint))
            && msg.contains(&format!("not {}", other.fingerprint)),
        "{msg}"
    );
}

#[test]
fn corrupt_viz_data_gives_clean_errors() {
    let m = load_model_parts(&model_dir()).unwrap();
    let target = ImportTarget {
        config: &m.config,
        fingerprint: m.fingerprint.clone(),
        name: None,
        path: None,
    };
    let dir = TempDir::new().unwrap();
    let bytes = std::fs::read(viz()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.pt", bytes[..bytes.len() / 2].to_vec()),
        ("garbage.pt", b"not a zip at all".to_vec()),
        ("empty.pt", Vec::new()),
    ];
    for (name, data) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        let msg = import_viz_data(&p, &target, "t").unwrap_err().to_string();
        assert!(msg.contains(name) && !msg.contains('\n'), "{msg}");
    }
    // A corrupted pickle inside a valid zip: flip bytes in data.pkl (stored uncompressed).
    let mut flipped = bytes.clone();
    let at = bytes.windows(8).position(|w| w == b"data.pkl").unwrap() + 200;
    for b in &mut flipped[at..at + 64] {
        *b = 0xff;
    }
    let p = dir.path().join("flipped.pt");
    std::fs::write(&p, flipped).unwrap();
    let msg = import_viz_data(&p, &target, "t").unwrap_err().to_string();
    assert!(msg.contains("flipped.pt") && !msg.contains('\n'), "{msg}");

    let msg = import_viz_data(&dir.path().join("nope.pt"), &target, "t")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope.pt"), "{msg}");

    // A model of another shape is refused.
    let other = load_model_parts(&root().join("reference-gpt/cat_pos_emb")).unwrap();
    let t2 = ImportTarget {
        config: &other.config,
        fingerprint: other.fingerprint.clone(),
        name: None,
        path: None,
    };
    let msg = import_viz_data(&viz(), &t2, "t").unwrap_err().to_string();
    assert!(msg.contains("viz_data.pt"), "{msg}");
}

#[test]
fn cli_import_and_show() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("circuit.json");
    let args = || ImportVizArgs {
        viz_data: viz(),
        model: model_dir(),
        out: out.clone(),
        task: None,
        force: false,
        json: false,
    };
    run_import(args()).unwrap();
    let c = CircuitFile::load(&out).unwrap();
    assert_eq!(c.source, "import:viz_data.pt");
    let msg = run_import(args()).unwrap_err().to_string();
    assert!(msg.contains("--force"), "{msg}");
    run_import(ImportVizArgs { force: true, ..args() }).unwrap();
    run_show(ShowArgs {
        file: out.clone(),
        model: Some(model_dir()),
        json: true,
    })
    .unwrap();
    run_show(ShowArgs {
        file: out.clone(),
        model: None,
        json: false,
    })
    .unwrap();
    let e = run_show(ShowArgs {
        file: out,
        model: Some(root().join("reference-gpt/layernorm_tied_relu")),
        json: false,
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("was made for model"), "{e:#}");
}

/// A 1-layer model with hand-set weights: d_model 4, 1 head of 4, d_mlp 4, vocab 3.
fn tiny_model() -> (Config, Checkpoint) {
    let cfg = Config::from_json_str(
        r#"{"n_layer": 1, "d_model": 4, "n_head": 1, "d_head": 4, "d_mlp": 4, "vocab_size": 3, "block_size": 4}"#,
    )
    .unwrap()
    .config;
    let z = |r: usize, c: usize| vec![0f32; r * c];
    let mut c_attn = z(12, 4);
    c_attn[4] = 0.5; // q[1] <- act_in[0]
    c_attn[(4 + 1) * 4] = 2.0; // k[1] <- act_in[0]
    c_attn[(8 + 2) * 4 + 1] = -3.0; // v[2] <- act_in[1]
    let mut attn_proj = z(4, 4);
    attn_proj[3 * 4 + 2] = 4.0; // attn.resid_delta[3] <- v[2]
    let mut c_fc = z(4, 4);
    c_fc[3 + 2 * 4] = 1.5; // post_act[2] <- mlp.act_in[3]
    c_fc[4] = 0.1; // post_act[1] <- mlp.act_in[0]
    let mut mlp_proj = z(4, 4);
    mlp_proj[2] = 0.25; // mlp.resid_delta[0] <- post_act[2]
    let mut wte = z(3, 4);
    wte[0] = 1.0; // channel 0
    wte[5] = 1.0; // channel 1
    let mut lm = z(3, 4);
    lm[0] = 1.0; // reads channel 0
    let t = |v: Vec<f32>, r: usize, c: usize| Stored::Dense(Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap());
    let mut tensors = BTreeMap::new();
    tensors.insert("transformer.h.0.attn.c_attn.weight".to_string(), t(c_attn, 12, 4));
    tensors.insert("transformer.h.0.attn.c_proj.weight".to_string(), t(attn_proj, 4, 4));
    tensors.insert("transformer.h.0.mlp.c_fc.weight".to_string(), t(c_fc, 4, 4));
    tensors.insert("transformer.h.0.mlp.c_proj.weight".to_string(), t(mlp_proj, 4, 4));
    tensors.insert("transformer.wte.weight".to_string(), t(wte, 3, 4));
    tensors.insert("lm_head.weight".to_string(), t(lm, 3, 4));
    (
        cfg,
        Checkpoint {
            path: Path::new("tiny").to_path_buf(),
            tensors,
        },
    )
}

#[test]
fn graph_from_weights() {
    let (cfg, ckpt) = tiny_model();
    let ids: Vec<NodeId> = [
        "0.attn.act_in[0]",
        "0.attn.act_in[1]",
        "0.attn.q[1]",
        "0.attn.k[1]",
        "0.attn.v[2]",
        "0.attn.resid_delta[3]",
        "0.mlp.act_in[3]",
        "0.mlp.act_in[0]",
        "0.mlp.post_act[2]",
        "0.mlp.resid_delta[0]",
        "final_resid[0]",
        "final_resid[3]",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let g = CircuitGraph::from_weights(&ids, &cfg, &ckpt).unwrap();
    let n = |s: &str| GraphNode::Node(s.parse().unwrap());
    let has = |a: &str, b: &str, kind: EdgeKind, w: f64| {
        g.out_neighbors(&n(a))
            .unwrap()
            .iter()
            .any(|(t, e)| *t == n(b) && e.kind == kind && e.weight == w)
    };
    assert!(has("0.attn.act_in[0]", "0.attn.q[1]", EdgeKind::Weight, 0.5));
    assert!(has("0.attn.act_in[0]", "0.attn.k[1]", EdgeKind::Weight, 2.0));
    assert!(has("0.attn.act_in[1]", "0.attn.v[2]", EdgeKind::Weight, -3.0));
    assert!(has("0.attn.v[2]", "0.attn.resid_delta[3]", EdgeKind::Weight, 4.0));
    assert!(has("0.attn.resid_delta[3]", "0.mlp.act_in[3]", EdgeKind::Residual, 1.0));
    assert!(has("0.attn.resid_delta[3]", "final_resid[3]", EdgeKind::Residual, 1.0));
    assert!(has("0.mlp.act_in[3]", "0.mlp.post_act[2]", EdgeKind::Weight, 1.5));
    assert!(has("0.mlp.post_act[2]", "0.mlp.resid_delta[0]", EdgeKind::Weight, 0.25));
    assert!(has("0.mlp.resid_delta[0]", "final_resid[0]", EdgeKind::Residual, 1.0));
    assert!(has("0.attn.q[1]", "0.attn.k[1]", EdgeKind::QkInteraction, 1.0));
    assert!(g
        .out_neighbors(&n("final_resid[0]"))
        .unwrap()
        .iter()
        .any(|(t, e)| *t == GraphNode::Logits && e.kind == EdgeKind::Unembed));
    // final_resid[3] is not read by any token's unembedding; mlp.act_in[0] has no edge to post_act[2].
    assert!(g.out_neighbors(&n("final_resid[3]")).unwrap().is_empty());
    assert!(!has("0.mlp.act_in[0]", "0.mlp.post_act[2]", EdgeKind::Weight, 0.1));

    // embed → act_in[1] → v[2] → resid_delta[3] → mlp.act_in[3] → post_act[2] → resid_delta[0] → final_resid[0]
    // → logits; embed → act_in[0]/mlp.act_in[0]/final_resid[0] directly too.
    let paths = g.paths(&GraphNode::Embed, &GraphNode::Logits, 20, 100).unwrap();
    assert_eq!(paths.len(), 2, "{paths:?}");
    let best = g
        .strongest_path(&GraphNode::Embed, &GraphNode::Logits)
        .unwrap()
        .unwrap();
    assert_eq!(best.nodes.len(), 9, "{best}");
    assert!((best.strength() - 3.0 * 4.0 * 1.5 * 0.25).abs() < 1e-9);
    let weighted = g
        .strongest_weighted_path(&GraphNode::Embed, &GraphNode::Logits)
        .unwrap()
        .unwrap();
    assert_eq!(weighted, best);
    let doms = g.dominators(&GraphNode::Embed, &GraphNode::Logits).unwrap().unwrap();
    assert_eq!(doms, vec![n("final_resid[0]")]);
    // Without weak weights (< 1), the long path breaks at post_act → resid_delta (0.25).
    let strong = g.filter_by_strength(1.0);
    assert_eq!(
        strong
            .paths(&GraphNode::Embed, &GraphNode::Logits, 20, 100)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(strong.node_count(), g.node_count());

    let bad: Vec<NodeId> = vec!["3.attn.q[0]".parse().unwrap()];
    assert!(CircuitGraph::from_weights(&bad, &cfg, &ckpt).is_err());
}

#[test]
fn graph_of_imported_circuit() {
    let (c, cfg) = import();
    let m = load_model_parts(&model_dir()).unwrap();
    let g = CircuitGraph::build(&c, &cfg, &m.ckpt).unwrap();
    assert_eq!(g.circuit_nodes().len(), c.nodes.len());
    // Persisted ids only: every node of the file is in the graph.
    for n in &c.nodes {
        assert!(g.contains(&GraphNode::Node(n.id)));
    }
    let _ = g.strongest_path(&GraphNode::Embed, &GraphNode::Logits).unwrap();
}
