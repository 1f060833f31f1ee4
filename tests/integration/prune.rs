//! Pruning recovers a planted circuit, and the ablation measures behave as their definitions say.
//!
//! The planted model (1 layer, d_model 8, d_mlp 8, no AbsTopK) carries one feature along one path: the last token
//! (`a` = 1 or `b` = 2) writes ±1 on residual channel 3; MLP neurons 0 and 1 read +3 and −3; both write channel 5
//! (with opposite signs); the unembedding reads channel 5 into tokens 3 (for `a`) and 4 (for `b`). Attention is
//! all zeros. The task "after `a` say 3, after `b` say 4" therefore needs exactly five nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use circuitscope::analysis::ablate::{self, NodeSet, TaskData};
use circuitscope::analysis::prune::{prune, PruneConfig, PruneInput, Quiet};
use circuitscope::circuit::{model_fingerprint, ModelRef, NodeId};
use circuitscope::model::layout::{tensor_specs, TensorRole};
use circuitscope::model::{Checkpoint, Config, Gpt, LoadOptions, Stored};

fn planted() -> (Config, Checkpoint) {
    let json = serde_json::json!({
        "block_size": 16, "vocab_size": 8, "n_layer": 1, "n_head": 2, "d_head": 4, "d_model": 8, "d_mlp": 8,
        "rms_norm": true, "tied_unembed": false, "sink": false, "enable_bigram_table": false, "bias": true,
    });
    let cfg = Config::from_json_str(&json.to_string()).unwrap().config;
    let mut tensors = BTreeMap::new();
    for spec in tensor_specs(&cfg) {
        let n: usize = spec.shape.iter().product();
        let mut v = vec![0f32; n];
        let cols = *spec.shape.last().unwrap();
        let mut put = |r: usize, c: usize, x: f32| v[r * cols + c] = x;
        match (spec.name.as_str(), spec.role) {
            (_, TensorRole::NormWeight) => v.iter_mut().for_each(|x| *x = 1.0),
            ("transformer.wte.weight", _) => {
                for t in 0..8 {
                    put(t, 0, 1.0); // every token: a constant channel, so RMSNorm never divides by ~0
                }
                put(1, 3, 1.0);
                put(2, 3, -1.0);
            }
            ("transformer.h.0.mlp.c_fc.weight", _) => {
                put(0, 3, 1.0);
                put(1, 3, -1.0);
            }
            ("transformer.h.0.mlp.c_proj.weight", _) => {
                put(5, 0, 1.0);
                put(5, 1, -1.0);
            }
            ("lm_head.weight", _) => {
                put(3, 5, 2.0);
                put(4, 5, -2.0);
            }
            _ => {}
        }
        let t = Tensor::from_vec(v, spec.shape.clone(), &Device::Cpu).unwrap();
        tensors.insert(spec.name.clone(), Stored::Dense(t));
    }
    (
        cfg,
        Checkpoint {
            path: PathBuf::from("planted"),
            tensors,
        },
    )
}

/// Pairs: filler tokens (5..8) then `a` (→ 3) vs `b` (→ 4).
fn pairs(n: usize, seed: u64) -> TaskData {
    let mut d = TaskData {
        task: "planted".into(),
        pos: Vec::new(),
        neg: Vec::new(),
        tok: Vec::new(),
        alt: Vec::new(),
    };
    let mut s = seed;
    for i in 0..n {
        let len = 1 + i % 6;
        let mut ctx: Vec<u32> = (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                5 + ((s >> 33) % 3) as u32
            })
            .collect();
        let mut neg = ctx.clone();
        ctx.push(1);
        neg.push(2);
        d.pos.push(ctx);
        d.neg.push(neg);
        d.tok.push(3);
        d.alt.push(Some(4));
    }
    d
}

fn expected() -> Vec<NodeId> {
    [
        "0.mlp.act_in[3]",
        "0.mlp.post_act[0]",
        "0.mlp.post_act[1]",
        "0.mlp.resid_delta[5]",
        "final_resid[5]",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

#[test]
fn prune_recovers_the_planted_circuit() {
    let (cfg, ck) = planted();
    let model = Gpt::from_checkpoint(cfg.clone(), &ck, LoadOptions::default()).unwrap();
    let train = pairs(64, 1);
    let test = pairs(32, 2);
    let seqs: Vec<Vec<u32>> = train.pos.iter().chain(&train.neg).cloned().collect();
    let means = ablate::means_over(&model, &seqs).unwrap();
    let input = PruneInput {
        model: &model,
        checkpoint: &ck,
        model_ref: ModelRef {
            fingerprint: model_fingerprint(&ck, &cfg).unwrap(),
            name: Some("planted".into()),
            path: None,
            num_total_nodes: cfg.num_nodes(),
        },
        train,
        test,
        means: &means,
    };
    let pc = PruneConfig {
        steps: 120,
        batch_pairs: 16,
        lr: 2e-2,
        // The planted path's task loss is ~1e-4, so its gradients are small: a weaker penalty than the default
        // keeps the needed nodes from being switched off together (after which no single one can come back).
        k_coef: 1e-4,
        // One neuron alone gets the loss to ~0.06; below that both are needed.
        target_loss: 0.01,
        ..PruneConfig::default()
    };
    let (circuit, summary) = prune(&input, &pc, &Quiet).unwrap();
    assert_eq!(
        circuit.node_ids(),
        expected(),
        "{summary:?} {}",
        circuit.prune_config.as_ref().unwrap()
    );
    assert!(summary.losses.circuit <= pc.target_loss, "{summary:?}");
    assert_eq!(summary.effective_target, pc.target_loss);
    // The circuit is minimal: ablating any one node on top of it crosses the target; all but the two redundant
    // neurons break the task outright.
    for n in &circuit.nodes {
        let l = n.ablated_loss.unwrap();
        assert!(l > pc.target_loss, "{} ablated: {l}", n.id);
        if n.id.site != circuitscope::circuit::Site::MlpPostAct {
            assert!(l > 1.0, "{} ablated: {l}", n.id);
        }
    }
    // The weight edges of the path, each with an ablation delta.
    let edges: Vec<(String, String)> = circuit
        .edges
        .iter()
        .map(|e| (e.source.to_string(), e.target.to_string()))
        .collect();
    for (s, t) in [
        ("0.mlp.act_in[3]", "0.mlp.post_act[0]"),
        ("0.mlp.act_in[3]", "0.mlp.post_act[1]"),
        ("0.mlp.post_act[0]", "0.mlp.resid_delta[5]"),
        ("0.mlp.post_act[1]", "0.mlp.resid_delta[5]"),
    ] {
        assert!(
            edges.contains(&(s.to_string(), t.to_string())),
            "missing edge {s} -> {t}: {edges:?}"
        );
    }
    assert!(circuit.edges.iter().all(|e| e.ablation_delta.is_some_and(|d| d > 0.0)));
    assert_eq!(circuit.loss_curve.len(), pc.steps);
}

#[test]
fn sufficiency_and_necessity_of_the_planted_circuit() {
    let (cfg, ck) = planted();
    let model = Gpt::from_checkpoint(cfg.clone(), &ck, LoadOptions::default()).unwrap();
    let test = pairs(32, 3);
    let seqs: Vec<Vec<u32>> = test.pos.iter().chain(&test.neg).cloned().collect();
    let means = ablate::means_over(&model, &seqs).unwrap();
    let circuit = NodeSet::of(&cfg, &expected());
    let check = ablate::check_circuit(&model, &test, &circuit, &means).unwrap();
    assert_eq!(check.full.accuracy, 1.0);
    // The rest of the model carries nothing the task needs, so the circuit alone solves it.
    assert!(check.sufficiency.loss < 1e-3, "{check:?}");
    assert_eq!(check.sufficiency.accuracy, 1.0);
    // Without the path the logits of 3 and 4 tie: each side's loss is ln 2.
    assert!(
        (check.necessity.loss - 2.0 * std::f64::consts::LN_2).abs() < 1e-3,
        "{check:?}"
    );
    assert_eq!(check.necessity.accuracy, 0.0);
    // A partial circuit is insufficient.
    let partial = NodeSet::of(&cfg, &expected()[..4]);
    let p = ablate::check_circuit(&model, &test, &partial, &means).unwrap();
    assert!(p.sufficiency.loss > check.sufficiency.loss + 0.5, "{p:?}");
}

#[test]
fn means_over_averages_real_tokens_only() {
    let (cfg, ck) = planted();
    let model = Gpt::from_checkpoint(cfg, &ck, LoadOptions::default()).unwrap();
    // Channel 3 of the embedding is +1 for `a`, −1 for `b`, 0 for the rest; final_resid adds the MLP's write on 5.
    let means = ablate::means_over(&model, &[vec![5, 1], vec![2]]).unwrap();
    let act_in = &means["0.mlp.act_in"];
    // RMSNorm scales [1, ±1] rows by 1/sqrt(2/8) = 2: the three tokens give 0, +2, −2 on channel 3.
    assert!(act_in[3].abs() < 1e-5, "{act_in:?}");
    assert_eq!(means.len(), 9);
    assert!(ablate::check_means(&model.config, &means).is_ok());
    let mut bad = means.clone();
    bad.remove("final_resid");
    let err = ablate::check_means(&model.config, &bad).unwrap_err().to_string();
    assert!(err.contains("final_resid"), "{err}");
}

mod cli {
    use std::path::Path;

    const ROOT: &str = env!("CARGO_MANIFEST_DIR");

    use crate::common::cli_parts as run;

    /// A clean failure: non-zero exit and one `error:` line that mentions every needle.
    fn fails(args: &[&str], needles: &[&str]) {
        let (ok, _, stderr) = run(args);
        assert!(!ok, "{args:?} succeeded");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: "))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: `{}` lacks `{n}`", lines[0]);
        }
    }

    #[test]
    fn bundled_circuit_check_reproduces_its_stored_numbers() {
        for file in [
            "assets/circuits/tinypython-sparse/set_or_string_fixedvarname.json",
            "assets/circuits/realcode-sparse/for_while.json",
        ] {
            check_reproduces_stored_numbers(file);
        }
    }

    fn check_reproduces_stored_numbers(file: &str) {
        let stored: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap()).unwrap();
        let (ok, stdout, stderr) = run(&["circuit", "check", file, "--no-write", "--json"]);
        assert!(ok, "{stderr}");
        let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let l = &stored["losses"];
        let close =
            |a: &serde_json::Value, b: &serde_json::Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-3;
        assert!(close(&got["sufficiency"]["loss"], &l["sufficiency"]), "{got} vs {l}");
        assert!(close(&got["necessity"]["loss"], &l["necessity"]), "{got} vs {l}");
        assert!(close(&got["full"]["loss"], &l["full"]), "{got} vs {l}");
        assert_eq!(got["sufficiency"]["accuracy"], l["sufficiency_accuracy"]);
        assert_eq!(got["written"], false);
        // The circuit keeps the task; ablating it breaks the task.
        assert!(got["sufficiency"]["accuracy"].as_f64().unwrap() >= 0.9, "{got}");
        assert!(got["necessity"]["loss"].as_f64().unwrap() > 1.0, "{got}");
    }

    #[test]
    fn minimize_shrinks_a_bundled_circuit_within_its_target_and_check_agrees() {
        let src = "assets/circuits/tinypython-sparse/enumerate_range.json";
        let before = std::fs::read(Path::new(ROOT).join(src)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("enumerate_range.min.json");
        let o = out.to_str().unwrap();
        let args = [
            "circuit",
            "minimize",
            src,
            "-o",
            o,
            "--pairs",
            "16",
            "--target-loss",
            "0.4",
            "--sweeps",
            "2",
            "--json",
        ];
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "{stderr}");
        let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let n = |k: &str| got[k].as_u64().unwrap() as usize;
        let f = |k: &str| got[k].as_f64().unwrap();
        assert_eq!(n("nodes_before"), 29, "{got}");
        assert!(n("nodes_after") < n("nodes_before"), "{got}");
        assert!(f("final_loss") <= 0.4 && f("start_loss") <= 0.4, "{got}");
        let removals = got["removals"].as_array().unwrap();
        let removed_nodes = removals.iter().filter(|r| r["kind"] == "node").count();
        assert_eq!(n("nodes_before") - n("nodes_after"), removed_nodes, "{got}");
        assert!(removals.iter().all(|r| r["loss"].as_f64().unwrap() <= 0.4), "{got}");
        assert_eq!(removals.last().unwrap()["loss"], got["final_loss"], "{got}");
        // The source is untouched; the new file records what went and says version 2 only with removed edges.
        assert_eq!(std::fs::read(Path::new(ROOT).join(src)).unwrap(), before);
        let file = circuitscope::circuit::CircuitFile::load(&out).unwrap();
        assert_eq!(file.nodes.len(), n("nodes_after"));
        let removed_edges = removals.iter().filter(|r| r["kind"] == "edge").count();
        assert_eq!(file.removed_edges.len(), removed_edges);
        let text: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(text["format_version"], if removed_edges > 0 { 2 } else { 1 });
        assert_eq!(text["minimize"]["removals"].as_array().unwrap().len(), removals.len());
        // `circuit check` on the same pairs measures the same circuit, removed edges included.
        let (ok, stdout, stderr) = run(&["circuit", "check", o, "--pairs", "16", "--no-write", "--json"]);
        assert!(ok, "{stderr}");
        let check: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let suff = check["sufficiency"]["loss"].as_f64().unwrap();
        assert!((suff - f("final_loss")).abs() < 1e-4, "{check} vs {got}");
        // No overwrite without --force; a target the circuit already misses is one clear line.
        fails(&args, &["exists", "--force"]);
        let below = [
            "circuit",
            "minimize",
            src,
            "-o",
            o,
            "--force",
            "--pairs",
            "16",
            "--target-loss",
            "0.0001",
        ];
        fails(&below, &["already over the target", "0.0001"]);
    }

    #[test]
    fn search_keeps_the_smallest_circuit_that_meets_the_target() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("c.json");
        let o = out.to_str().unwrap();
        let args = [
            "prune",
            "--model",
            "assets/models/tinypython-sparse",
            "--task",
            "enumerate_range",
            "--target-loss",
            "0.4",
            // A strong penalty and a fast rate: 30 steps already give a circuit of a few dozen nodes, whose
            // per-node diagnostics stay cheap.
            "--steps",
            "30",
            "--k-coef",
            "1e-2",
            "--lr",
            "5e-2",
            "--train-pairs",
            "32",
            "--eval-pairs",
            "32",
            "--search",
            "2",
            "--jobs",
            "2",
            "-o",
            o,
            "--json",
        ];
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "{stderr}");
        let got: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let runs = got["search"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{got}");
        // Run 0 is the given configuration; the other differs from it.
        assert_eq!(runs[0]["k_coef"], 1e-2);
        assert_eq!(runs[0]["steps"], 30);
        assert!(
            runs[1..]
                .iter()
                .all(|r| r["k_coef"] != 1e-2 && r["seed"] != runs[0]["seed"]),
            "{got}"
        );
        let meeting: Vec<&serde_json::Value> = runs.iter().filter(|r| r["meets_target"] == true).collect();
        assert!(!meeting.is_empty(), "{got}");
        let smallest = meeting.iter().map(|r| r["nodes"].as_u64().unwrap()).min().unwrap();
        let chosen = &runs[got["chosen"].as_u64().unwrap() as usize];
        assert_eq!(chosen["nodes"].as_u64().unwrap(), smallest, "{got}");
        assert_eq!(got["nodes"], chosen["nodes"]);
        // The kept file is that run's circuit, with the search recorded in it.
        let file = circuitscope::circuit::CircuitFile::load(&out).unwrap();
        assert_eq!(file.nodes.len() as u64, smallest);
        let cfg = file.prune_config.unwrap();
        assert_eq!(cfg["search"]["runs"].as_array().unwrap().len(), 2);
        assert_eq!(cfg["config"]["seed"], chosen["seed"]);
        assert!(file.losses.circuit <= cfg["effective_target"].as_f64().unwrap());
        // No overwrite without --force, and no run started.
        fails(&args, &["exists", "--force"]);
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let sparse = "assets/models/tinypython-sparse";
        fails(
            &["prune", "--model", sparse, "--task", "no_such_task"],
            &["no_such_task", "bracket_counting"],
        );
        fails(
            &[
                "prune",
                "--model",
                sparse,
                "--task",
                "bracket_counting",
                "-o",
                "assets/circuits/tinypython-sparse/bracket_counting.json",
            ],
            &["exists", "--force"],
        );
        fails(
            &[
                "prune",
                "--model",
                sparse,
                "--task",
                "for_while",
                "--means",
                "median",
                "-o",
                "/nonexistent/x.json",
            ],
            &["median"],
        );
        // A model without a scan: copy the bundled one without its scan directory.
        let dir = tempfile::tempdir().unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(Path::new(ROOT).join(sparse).join(f), dir.path().join(f)).unwrap();
        }
        let model = dir.path().to_str().unwrap();
        let out = dir.path().join("c.json");
        fails(
            &[
                "prune",
                "--model",
                model,
                "--task",
                "for_while",
                "-o",
                out.to_str().unwrap(),
            ],
            &["no scan", "circuitscope scan", "--means task"],
        );
        assert!(!out.exists());
        // A circuit checked against another model's weights.
        fails(
            &[
                "circuit",
                "check",
                "assets/circuits/tinypython-sparse/for_while.json",
                "--model",
                "assets/models/tinypython-dense",
            ],
            &["for_while.json", "made for model tinypython-sparse"],
        );
        fails(&["circuit", "check", "/nonexistent/c.json"], &["/nonexistent/c.json"]);
    }
}
