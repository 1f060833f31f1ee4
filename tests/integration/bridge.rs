//! Bridges (issue 17): the bridge losses on a constructed pair against arithmetic done by hand, a bridged step
//! with every bridge term off against a plain step, bridged resume against an uninterrupted run, and the
//! `bridge eval` and `run --bridge-steer` commands on a tiny bridged model trained here.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use circuitscope::analysis::bridge::{self, BridgeCoefficients, Bridges};
use circuitscope::model::{Checkpoint, Config, Gpt};
use circuitscope::train::params::Params;
use circuitscope::train::{train, TrainConfig};

use crate::common::{cli, cli_err};

/// A one-layer model whose blocks are exact identities (every block matrix zero): each residual site holds the
/// embedding, and the logits are lm_head · rms(x). `seed` varies the embeddings and the unembedding.
fn identity_model(d_model: usize, seed: u64) -> (Gpt, Params) {
    let json = serde_json::json!({
        "block_size": 3, "vocab_size": 5, "n_layer": 1, "n_head": 1, "d_head": 2, "d_model": d_model,
        "d_mlp": 4, "rms_norm": true, "tied_unembed": false, "sink": false, "enable_bigram_table": false,
        "bias": false, "afrac": 0.5, "afrac_loctypes": "", "activation_type": "gelu",
    });
    let cfg = Config::from_json_str(&json.to_string()).unwrap().config;
    let params = Params::init(&cfg, seed).unwrap();
    for (name, var) in &params.vars {
        let keep = name.contains("wte") || name.contains("wpe") || name.contains("lm_head") || name.contains("ln_f");
        if !keep {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
        } else if !name.contains("ln_f") {
            // N(0, 0.02) init is too flat to tell the terms apart: scale it up to logits of order one.
            var.set(&var.as_tensor().affine(40.0, 0.0).unwrap()).unwrap();
        }
    }
    let model = params.model(&cfg).unwrap();
    (model, params)
}

fn matrix(p: &Params, name: &str) -> Vec<Vec<f64>> {
    let t: Vec<Vec<f32>> = p.vars[name].as_tensor().to_vec2().unwrap();
    t.into_iter().map(|r| r.into_iter().map(f64::from).collect()).collect()
}

fn matvec(m: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    m.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rms(x: &[f64]) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = (ms + f32::EPSILON as f64).sqrt();
    x.iter().map(|v| v / s).collect()
}

fn log_softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z = l.iter().map(|v| (v - m).exp()).sum::<f64>().ln() + m;
    l.iter().map(|v| v - z).collect()
}

fn kl(p_logits: &[f64], q_logits: &[f64]) -> f64 {
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

fn top2(mut x: Vec<f64>) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].abs().total_cmp(&x[a].abs()).then(a.cmp(&b)));
    for &i in &idx[2..] {
        x[i] = 0.0;
    }
    x
}

/// Every bridge term on a constructed pair (identity blocks, so each site holds the embedding and "onward" is the
/// unembedding) equals the same arithmetic done here in f64 from the weights, and the total is the weighted sum.
#[test]
fn bridge_losses_equal_hand_computed_values() {
    let (ds, dd) = (4, 6);
    let (sparse, sp) = identity_model(ds, 1);
    let (dense, dp) = identity_model(dd, 2);
    let sites = bridge::site_count(1);
    // Bridges with distinct, hand-written weights per site.
    let mut tensors = BTreeMap::new();
    for (name, shape) in bridge::tensor_shapes(sites, dd, ds) {
        let n: usize = shape.iter().product();
        let salt = name.len() as f32 + if name.starts_with("enc") { 0.3 } else { 0.7 };
        let site: f32 = name.split('.').nth(1).unwrap().parse().unwrap();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 1.7 + salt + 2.9 * site).sin()) * 0.8)
            .collect();
        tensors.insert(name, Tensor::from_vec(data, shape.as_slice(), &Device::Cpu).unwrap());
    }
    let k = bridge::encoder_topk(&sparse.config);
    assert_eq!(k, Some(2));
    let bridges = Bridges::from_tensors(tensors.clone(), sites, dd, ds, k).unwrap();
    let ids: Vec<u32> = vec![1, 4, 2, 0, 3, 3];
    let targets: Vec<u32> = vec![4, 2, 0, 3, 3, 1];
    let tokens = Tensor::from_vec(ids.clone(), (2, 3), &Device::Cpu).unwrap();
    let tgt = Tensor::from_vec(targets.clone(), (2, 3), &Device::Cpu).unwrap();
    let coef = BridgeCoefficients {
        ce: 1.0,
        kl: 0.5,
        nmse_encode: 2.0,
        nmse_decode: 0.25,
        kl_dense_to_sparse: 3.0,
        kl_sparse_to_dense: 1.5,
    };
    let terms = bridge::bridge_losses(&sparse, &dense, &bridges, &tokens, &tgt, &coef, None).unwrap();
    let got: BTreeMap<&str, f64> = terms.values().unwrap().into_iter().collect();
    let total: f64 = terms.total.to_scalar::<f32>().unwrap() as f64;

    // By hand.
    let (wte_s, wpe_s, lm_s) = (
        matrix(&sp, "transformer.wte.weight"),
        matrix(&sp, "transformer.wpe.weight"),
        matrix(&sp, "lm_head.weight"),
    );
    let (wte_d, wpe_d, lm_d) = (
        matrix(&dp, "transformer.wte.weight"),
        matrix(&dp, "transformer.wpe.weight"),
        matrix(&dp, "lm_head.weight"),
    );
    let mat = |name: &str| -> Vec<Vec<f64>> {
        let t: Vec<Vec<f32>> = tensors[name].to_vec2().unwrap();
        t.into_iter().map(|r| r.into_iter().map(f64::from).collect()).collect()
    };
    let vecf = |name: &str| -> Vec<f64> {
        let t: Vec<f32> = tensors[name].to_vec1().unwrap();
        t.into_iter().map(f64::from).collect()
    };
    let add = |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
    let n = ids.len() as f64;
    let (mut ce, mut kl_ds) = (0.0, 0.0);
    let mut emb_s = Vec::new();
    let mut emb_d = Vec::new();
    let mut dl = Vec::new();
    for (i, (&id, &t)) in ids.iter().zip(&targets).enumerate() {
        let pos = i % 3;
        let es = add(&wte_s[id as usize], &wpe_s[pos]);
        let ed = add(&wte_d[id as usize], &wpe_d[pos]);
        let ls = matvec(&lm_s, &rms(&es));
        let ld = matvec(&lm_d, &rms(&ed));
        ce -= log_softmax(&ls)[t as usize];
        kl_ds += kl(&ld, &ls);
        emb_s.push(es);
        emb_d.push(ed);
        dl.push(ld);
    }
    let (mut ne, mut nd, mut kd2s, mut ks2d) = (0.0, 0.0, 0.0, 0.0);
    let (mut per_site_d2s, mut per_site_s2d) = (vec![0.0; sites], vec![0.0; sites]);
    for s in 0..sites {
        let (ew, eb) = (mat(&format!("encoder.{s}.weight")), vecf(&format!("encoder.{s}.bias")));
        let (dw, db) = (mat(&format!("decoder.{s}.weight")), vecf(&format!("decoder.{s}.bias")));
        let (mut e_err, mut e_norm, mut d_err, mut d_norm) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..ids.len() {
            let enc = top2(add(&matvec(&ew, &emb_d[i]), &eb));
            let dec = add(&matvec(&dw, &emb_s[i]), &db);
            e_err += enc.iter().zip(&emb_s[i]).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            e_norm += emb_s[i].iter().map(|v| v * v).sum::<f64>();
            d_err += dec.iter().zip(&emb_d[i]).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
            d_norm += emb_d[i].iter().map(|v| v * v).sum::<f64>();
            let d2s = kl(&dl[i], &matvec(&lm_s, &rms(&enc))) / n;
            let s2d = kl(&dl[i], &matvec(&lm_d, &rms(&dec))) / n;
            kd2s += d2s;
            ks2d += s2d;
            per_site_d2s[s] += d2s;
            per_site_s2d[s] += s2d;
        }
        ne += e_err / e_norm;
        nd += d_err / d_norm;
    }
    let m = sites as f64;
    let want = [
        ("ce", ce / n),
        ("kl", kl_ds / n),
        ("nmse_encode", ne / m),
        ("nmse_decode", nd / m),
        ("kl_dense_to_sparse", kd2s / m),
        ("kl_sparse_to_dense", ks2d / m),
    ];
    let mut want_total = 0.0;
    for (name, w) in want {
        let g = got[name];
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{name}: got {g}, by hand {w}");
        assert!(
            w > 1e-3,
            "{name} is {w}: the constructed pair should make every term non-trivial"
        );
        let c = match name {
            "ce" => coef.ce,
            "kl" => coef.kl,
            "nmse_encode" => coef.nmse_encode,
            "nmse_decode" => coef.nmse_decode,
            "kl_dense_to_sparse" => coef.kl_dense_to_sparse,
            _ => coef.kl_sparse_to_dense,
        };
        want_total += c * w;
    }
    assert!(
        (total - want_total).abs() <= 1e-4 * want_total.abs(),
        "total {total}, by hand {want_total}"
    );

    // Mixed paths on a subset of sites average over that subset only.
    let one = bridge::bridge_losses(&sparse, &dense, &bridges, &tokens, &tgt, &coef, Some(&[1])).unwrap();
    let one: BTreeMap<&str, f64> = one.values().unwrap().into_iter().collect();
    assert!((one["kl_dense_to_sparse"] - per_site_d2s[1]).abs() <= 1e-4 * per_site_d2s[1].max(1.0));
    assert!((one["kl_sparse_to_dense"] - per_site_s2d[1]).abs() <= 1e-4 * per_site_s2d[1].max(1.0));
    assert_eq!(
        one["nmse_encode"], got["nmse_encode"],
        "reconstruction terms still cover every site"
    );
    let picks = bridge::sample_sites(5, 2, 0, 7);
    assert_eq!(picks, bridge::sample_sites(5, 2, 0, 7));
    assert!(picks.len() == 2 && picks[0] < picks[1] && picks[1] < 5);

    // A zero weight skips its term entirely.
    let only_ce = BridgeCoefficients {
        kl: 0.0,
        nmse_encode: 0.0,
        nmse_decode: 0.0,
        kl_dense_to_sparse: 0.0,
        kl_sparse_to_dense: 0.0,
        ..coef
    };
    let terms = bridge::bridge_losses(&sparse, &dense, &bridges, &tokens, &tgt, &only_ce, None).unwrap();
    assert_eq!(terms.values().unwrap().len(), 1);
}

/// Site numbering: embed, then attention and MLP of each layer; a hook's site is the first one downstream.
#[test]
fn sites_are_numbered_after_each_sublayer() {
    use circuitscope::model::{HookName, HookSite};
    assert_eq!(bridge::site_count(2), 5);
    let hooks: Vec<String> = (0..5).map(|s| bridge::site_hook(s, 2).to_string()).collect();
    assert_eq!(
        hooks,
        ["0.resid_in", "0.resid_mid", "1.resid_in", "1.resid_mid", "final_resid"]
    );
    let labels: Vec<String> = (0..5).map(bridge::site_label).collect();
    assert_eq!(labels, ["embed", "0.attn", "0.mlp", "1.attn", "1.mlp"]);
    assert_eq!(bridge::site_after(HookName::block(0, HookSite::AttnV), 2), 1);
    assert_eq!(bridge::site_after(HookName::block(1, HookSite::MlpPostAct), 2), 4);
    assert_eq!(bridge::site_after(HookName::block(1, HookSite::ResidIn), 2), 2);
}

/// A small dense model of the test preset's shape, trained a few steps, to bridge to.
fn dense_model(dir: &Path) {
    let cfg = TrainConfig {
        density: 1.0,
        steps: 3,
        ..TrainConfig::preset("test").unwrap()
    };
    train(&cfg, dir, None, false, None).unwrap();
}

fn checkpoint_values(path: &Path) -> BTreeMap<String, Vec<f32>> {
    Checkpoint::open(path)
        .unwrap()
        .tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.to_dense().unwrap().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect()
}

/// With every bridge term weighted 0 a bridged run is the plain trainer on the same data: identical weights.
#[test]
fn bridged_step_without_bridge_terms_equals_a_plain_step() {
    let dense = tempfile::tempdir().unwrap();
    dense_model(dense.path());
    let off = BridgeCoefficients {
        ce: 1.0,
        kl: 0.0,
        nmse_encode: 0.0,
        nmse_decode: 0.0,
        kl_dense_to_sparse: 0.0,
        kl_sparse_to_dense: 0.0,
    };
    let base = TrainConfig {
        steps: 2,
        ..TrainConfig::preset("test").unwrap()
    };
    let bridged = base.bridged(dense.path(), off, None).unwrap();
    let plain = TrainConfig {
        bridge: None,
        ..bridged.clone()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(&bridged, a.path(), None, false, None).unwrap();
    train(
        &plain,
        b.path(),
        Some(&dense.path().join("tokenizer.json")),
        false,
        None,
    )
    .unwrap();
    let (wa, wb) = (
        checkpoint_values(&a.path().join("checkpoint/model.safetensors")),
        checkpoint_values(&b.path().join("checkpoint/model.safetensors")),
    );
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    for (name, va) in &wa {
        assert_eq!(va, &wb[name], "{name} differs between the bridged and the plain step");
    }
    // The weights did move (the comparison is not between two untouched inits).
    let init = Params::init(&plain.model, plain.seed).unwrap();
    let w0: Vec<f32> = init.vars["lm_head.weight"]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_ne!(w0, wa["lm_head.weight"]);
    // The bridged run still exports its bridges and names the dense model.
    assert!(a.path().join("bridges.safetensors").exists());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("bridge.json")).unwrap()).unwrap();
    assert_eq!(info["sites"], 3);
    assert_eq!(info["coefficients"]["kl"], 0.0);
}

/// A bridged run stopped and resumed equals an uninterrupted one: the sparse weights, the bridges and the
/// optimiser moments (the bridges' included).
#[test]
fn bridged_resume_equals_an_uninterrupted_run() {
    let dense = tempfile::tempdir().unwrap();
    dense_model(dense.path());
    let cfg = TrainConfig {
        steps: 4,
        checkpoint_every: 2,
        ..TrainConfig::preset("test").unwrap()
    }
    .bridged(dense.path(), BridgeCoefficients::default(), Some(2))
    .unwrap();
    let (straight, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(&cfg, straight.path(), None, false, None).unwrap();
    train(&cfg, split.path(), None, false, Some(2)).unwrap();
    train(&cfg, split.path(), None, true, None).unwrap();
    for file in ["model.safetensors", "bridges.safetensors", "optim.safetensors"] {
        let (a, b) = (
            checkpoint_values(&straight.path().join("checkpoint").join(file)),
            checkpoint_values(&split.path().join("checkpoint").join(file)),
        );
        assert_eq!(a.len(), b.len(), "{file}");
        for (name, va) in &a {
            let diff = va.iter().zip(&b[name]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "{file}: {name} differs by {diff} after resume");
        }
        if file == "optim.safetensors" {
            assert!(
                a.keys().any(|k| k.starts_with("m.bridge.encoder.0")),
                "bridge moments are saved"
            );
        }
    }
    // The log names each bridge term.
    let log = std::fs::read_to_string(straight.path().join("log.jsonl")).unwrap();
    assert!(
        log.contains("\"kl_sparse_to_dense\"") && log.contains("\"bridge_grad_norm\""),
        "{log}"
    );
}

/// `bridge eval` and `run --bridge-steer` on a tiny bridged model trained here.
#[test]
fn bridge_eval_and_steering_on_a_tiny_bridged_model() {
    let dense = tempfile::tempdir().unwrap();
    dense_model(dense.path());
    let out = tempfile::tempdir().unwrap();
    let model = out.path().join("bridged");
    let (d, m) = (dense.path().to_str().unwrap(), model.to_str().unwrap());
    let r = cli(&[
        "train",
        "--preset",
        "test",
        "--steps",
        "3",
        "--bridge-to",
        d,
        "--out",
        m,
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);

    let r = cli(&[
        "bridge",
        "eval",
        "--model",
        m,
        "--tokens",
        "64",
        "--task-pairs",
        "2",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let paths = v["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 3 + 4 * 3, "dense, sparse, unigram and four paths per site");
    let row = |name: &str, site: Option<u64>| {
        paths
            .iter()
            .find(|p| p["path"] == name && p["site"].as_u64() == site)
            .unwrap_or_else(|| panic!("no row {name} {site:?}"))
            .clone()
    };
    assert!(row("dense", None)["kl"].as_f64().unwrap().abs() < 1e-4);
    assert!(row("sparse", None)["kl"].as_f64().unwrap() > 0.0);
    for p in paths {
        assert!(
            p["ce"].as_f64().unwrap().is_finite() && p["kl"].as_f64().unwrap() >= -1e-5,
            "{p}"
        );
    }
    // The last site is final_resid: dense up to it, decoded from the sparse model, is the sparse model's
    // final residual read by the dense unembedding, so it differs from the dense model alone.
    assert!(row("sparse>dense", Some(2))["kl"].as_f64().unwrap() > 0.0);
    let sites = v["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 3);
    assert_eq!(sites[2]["hook"], "final_resid");
    assert!(sites.iter().all(|s| s["nmse_encode"].as_f64().unwrap() > 0.0));
    assert!(!v["tasks"].as_array().unwrap().is_empty());
    assert!(v["dense_fingerprint"].as_str().unwrap().len() == 16);

    // Text output.
    let r = cli(&["bridge", "eval", "--model", m, "--tokens", "32", "--task-pairs", "0"]);
    assert!(
        r.ok && r.stdout.contains("sparse>dense") && r.stdout.contains("per-site NMSE"),
        "{}",
        r.stdout
    );

    // Steering: set an MLP neuron at the last token; the change crosses at site 2 (after block 0's MLP).
    let r = cli(&[
        "run",
        "--model",
        m,
        "--tokens",
        "3,7,9,4",
        "--bridge-steer",
        "0.mlp.post_act[1]=8@-1",
        "--logit-diff",
        "#5",
        "#6",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let b = &v["bridge_steer"];
    assert_eq!(b["site"], 2);
    assert_eq!(b["hook"], "final_resid");
    let dn: Vec<f64> = b["dense_delta_norm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(dn.len(), 4);
    assert!(
        dn[..3].iter().all(|x| *x == 0.0),
        "only the last position changes: {dn:?}"
    );
    assert!(dn[3] > 0.0, "{dn:?}");
    // The plain run's top token is the dense-steer's sparse "before".
    assert_eq!(b["sparse"]["before"][0]["id"], v["top"][0]["id"]);
    let ld = &b["dense"]["logit_diff"];
    assert_ne!(ld["before"], ld["after"]);
    // Before the edit the dense model is the dense model: its own run gives the same top token and logit.
    let r = cli(&["run", "--model", d, "--tokens", "3,7,9,4", "--json"]);
    let plain: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(b["dense"]["before"][0]["id"], plain["top"][0]["id"]);
    let (x, y) = (
        b["dense"]["before"][0]["logit"].as_f64().unwrap(),
        plain["top"][0]["logit"].as_f64().unwrap(),
    );
    assert!((x - y).abs() < 1e-4, "{x} vs {y}");

    assert_eq!(b["values"][0], 8.0);

    // `class_b`: the node's mean over the task's counterfactual prompts, resolved to a number.
    let r = cli(&[
        "run",
        "--model",
        m,
        "--tokens",
        "3,7,9,4",
        "--bridge-steer",
        "0.mlp.post_act[1]=class_b@-1",
        "--means-task",
        "single_double_quote",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["bridge_steer"]["values"][0].as_f64().unwrap().is_finite());
    cli_err(
        &[
            "run",
            "--model",
            m,
            "--tokens",
            "3,7",
            "--bridge-steer",
            "0.mlp.post_act[1]=class_a",
        ],
        &["--means-task"],
    );

    // Errors: a dense model of another depth, a dense model that is not the one trained against, a model
    // without bridges, and a bad node.
    cli_err(
        &[
            "train",
            "--preset",
            "test",
            "--bridge-to",
            "assets/models/tinypython-dense",
            "--out",
            out.path().join("never").to_str().unwrap(),
        ],
        &["--bridge-to", "layers"],
    );
    let other = out.path().join("other-dense");
    train(
        &TrainConfig {
            density: 1.0,
            steps: 1,
            seed: 5,
            ..TrainConfig::preset("test").unwrap()
        },
        &other,
        Some(&dense.path().join("tokenizer.json")),
        false,
        None,
    )
    .unwrap();
    cli_err(
        &["bridge", "eval", "--model", m, "--dense", other.to_str().unwrap()],
        &["fingerprint", "trained against"],
    );
    cli_err(&["bridge", "eval", "--model", d], &["no bridge.json", "--bridge-to"]);
    cli_err(
        &[
            "run",
            "--model",
            m,
            "--tokens",
            "3,7",
            "--bridge-steer",
            "0.mlp.post_act[9999]=1",
        ],
        &["--bridge-steer"],
    );
    // Damaged files: bridges missing a tensor, then a bridge.json from a newer build.
    let weights = model.join("bridges.safetensors");
    let saved = std::fs::read(&weights).unwrap();
    let mut fewer = Checkpoint::open(&weights).unwrap().tensors;
    fewer.remove("decoder.1.weight");
    circuitscope::model::checkpoint::write_safetensors(&weights, &fewer, &[]).unwrap();
    cli_err(&["bridge", "eval", "--model", m], &["decoder.1.weight"]);
    std::fs::write(&weights, saved).unwrap();
    let info_path = model.join("bridge.json");
    let text = std::fs::read_to_string(&info_path).unwrap();
    std::fs::write(
        &info_path,
        text.replace("\"format_version\": 1", "\"format_version\": 2"),
    )
    .unwrap();
    cli_err(&["bridge", "eval", "--model", m], &["format version 2", "newer"]);
}

/// Trains the tiny bridged model the steering tests use into `out/bridged` (the dense model into `dense`).
fn tiny_bridged(dense: &Path, out: &Path) -> std::path::PathBuf {
    dense_model(dense);
    let model = out.join("bridged");
    let r = cli(&[
        "train",
        "--preset",
        "test",
        "--steps",
        "3",
        "--bridge-to",
        dense.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    model
}

fn tally(v: &serde_json::Value) -> [u64; 4] {
    ["prompts", "toward", "away", "unchanged"].map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
}

/// `bridge steer-eval` on a tiny bridged model: the counts add up, a zero change moves nothing, the random
/// control is a function of the seed, the sign convention agrees with steering one prompt by hand, and bad
/// nodes and tasks are one-line errors.
#[test]
fn bridge_steer_eval_on_a_tiny_bridged_model() {
    let (dense, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let model = tiny_bridged(dense.path(), out.path());
    let m = model.to_str().unwrap();
    let node = "0.mlp.post_act[1]";
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "bridge",
            "steer-eval",
            "--model",
            m,
            "--task",
            "single_double_quote",
            "--node",
            node,
            "--pairs",
            "6",
            "--random",
            "4",
            "--json",
        ];
        args.extend_from_slice(extra);
        let r = cli(&args);
        assert!(r.ok, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let v = eval(&[]);
    assert_eq!(v["pairs"], 6);
    assert_eq!(v["site"], 2, "an MLP edit of layer 0 crosses after block 0's MLP");
    assert_eq!(v["site_hook"], "final_resid");
    let (ab, ba, all) = (
        tally(&v["dense"]["a_to_b"]),
        tally(&v["dense"]["b_to_a"]),
        tally(&v["dense"]["all"]),
    );
    assert_eq!((ab[0], ba[0], all[0]), (6, 6, 12), "two steered prompts per pair");
    for t in [ab, ba, all, tally(&v["sparse"])] {
        assert_eq!(t[1] + t[2] + t[3], t[0], "toward + away + unchanged = prompts: {t:?}");
    }
    for i in 1..4 {
        assert_eq!(ab[i] + ba[i], all[i], "both directions add up to the total");
    }
    assert!(all[1] + all[2] > 0, "a real change moves the dense model: {all:?}");
    assert!(v["mean_abs_change"].as_f64().unwrap() > 0.0);
    let channels = v["random"]["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 4);
    let picked: Vec<u64> = channels.iter().map(|c| c["channel"].as_u64().unwrap()).collect();
    assert!(!picked.contains(&1), "the node itself is no control: {picked:?}");
    assert!(picked.windows(2).all(|w| w[0] < w[1]), "distinct: {picked:?}");
    let rates: Vec<f64> = channels.iter().map(|c| c["rate"].as_f64().unwrap()).collect();
    for c in channels {
        let t = tally(c);
        assert_eq!(t[0], 12);
        assert_eq!(t[1] + t[2] + t[3], 12);
    }
    let mean = rates.iter().sum::<f64>() / 4.0;
    assert!((v["random"]["mean_rate"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(v["random"]["std_rate"].as_f64().unwrap() >= 0.0);

    // The control is seeded: the same seed gives the same channels and numbers, another seed other channels.
    assert_eq!(eval(&[]), v);
    let other = eval(&["--seed", "7"]);
    assert_ne!(other["random"]["channels"], v["random"]["channels"]);
    assert_eq!(other["dense"], v["dense"], "the seed only draws the control");

    // A zero change (scale 0) moves nothing, through the bridge or at random channels.
    let zero = eval(&["--scale", "0"]);
    assert_eq!(tally(&zero["dense"]["all"]), [12, 0, 0, 12]);
    assert_eq!(tally(&zero["sparse"]), [12, 0, 0, 12]);
    for c in zero["random"]["channels"].as_array().unwrap() {
        assert_eq!(tally(c), [12, 0, 0, 12], "{c}");
    }
    assert_eq!(zero["mean_abs_change"], 0.0);

    // The direction by hand: set the node to the class-b mean on one class-a prompt with `steer` and read
    // the dense logit difference logit(target) − logit(alt): toward class b is a decrease.
    use circuitscope::analysis::ablate::TaskData;
    use circuitscope::data::tasks;
    use circuitscope::model::{Action, Intervention, LoadOptions};
    let (sparse, _) = Gpt::load(&model, LoadOptions::default()).unwrap();
    let pair = bridge::open_pair(&model, sparse, None, LoadOptions::default()).unwrap();
    let tok = circuitscope::tokenize::Tokenizer::load(model.join("tokenizer.json")).unwrap();
    let task = tasks::resolve("single_double_quote").unwrap();
    let test = tasks::split(task.as_ref(), tasks::Split::Test, 1);
    let data = TaskData::new(&tok, task.name(), &test, pair.sparse.config.block_size).unwrap();
    let (class_a, class_b) = (
        v["class_a"].as_f64().unwrap() as f32,
        v["class_b"].as_f64().unwrap() as f32,
    );
    let lib = bridge::steer_eval(&pair, &data, "0.mlp.post_act", 1, (class_a, class_b), &[], 1.0).unwrap();
    let (a, b) = (data.tok[0] as usize, data.alt[0].unwrap() as usize);
    for (ids, to, sign, t) in [
        (&data.pos[0], class_b, -1f32, lib.dense_a_to_b),
        (&data.neg[0], class_a, 1f32, lib.dense_b_to_a),
    ] {
        let edit = (
            "0.mlp.post_act".to_string(),
            Intervention::new(Action::Set(to)).channels(vec![1]).positions(vec![-1]),
        );
        let o = bridge::steer(&pair, ids, &[edit], 2).unwrap();
        let shift = sign * ((o.dense_after[a] - o.dense_after[b]) - (o.dense_before[a] - o.dense_before[b]));
        assert!(
            (t.mean_shift - shift as f64).abs() < 1e-3,
            "steer-eval's shift {} vs by hand {shift}",
            t.mean_shift
        );
        assert_eq!(t.toward, usize::from(shift > 0.0), "shift {shift}");
    }

    // Text output.
    let r = cli(&[
        "bridge",
        "steer-eval",
        "--model",
        m,
        "--task",
        "single_double_quote",
        "--node",
        node,
        "--pairs",
        "2",
        "--random",
        "2",
    ]);
    assert!(
        r.ok && r.stdout.contains("random control") && r.stdout.contains("dense, both"),
        "{}",
        r.stdout
    );

    // Errors: a channel past the hook, a hook that does not exist, a range, an unknown task, more random
    // channels than the hook has, a model without bridges.
    let base = |node: &str, task: &str| {
        vec![
            "bridge".to_string(),
            "steer-eval".into(),
            "--model".into(),
            m.into(),
            "--task".into(),
            task.into(),
            "--node".into(),
            node.into(),
            "--pairs".into(),
            "2".into(),
        ]
    };
    let err = |args: Vec<String>, needles: &[&str]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_err(&a, needles);
    };
    err(
        base("0.mlp.post_act[9999]", "single_double_quote"),
        &["--node", "out of range"],
    );
    err(
        base("7.mlp.post_act[1]", "single_double_quote"),
        &["--node", "unknown hook"],
    );
    err(base("0.mlp.post_act[1:3]", "single_double_quote"), &["--node", "one"]);
    err(base(node, "no_such_task"), &["--task", "no_such_task"]);
    let mut many = base(node, "single_double_quote");
    many.extend(["--random".into(), "64".into()]);
    err(many, &["--random", "63"]);
    cli_err(
        &[
            "bridge",
            "steer-eval",
            "--model",
            dense.path().to_str().unwrap(),
            "--task",
            "single_double_quote",
            "--node",
            node,
        ],
        &["no bridge.json"],
    );
}

/// `forward_from_site` (the trainer's mixed paths) gives the logits of a full forward with the site's hook
/// patched, at every site, and its gradient reaches the patched input.
#[test]
fn forward_from_a_site_equals_a_patched_forward() {
    use circuitscope::model::{Action, Hooks, Intervention};
    let cfg = TrainConfig::preset("test").unwrap().model;
    let cfg = Config { n_layer: 2, ..cfg };
    let params = Params::init(&cfg, 7).unwrap();
    let model = params.model(&cfg).unwrap();
    let tokens = Tensor::from_vec(vec![3u32, 9, 27, 4, 100, 2, 8, 8], (2, 4), &Device::Cpu).unwrap();
    for site in 0..bridge::site_count(2) {
        let x = Tensor::randn(0f32, 1.0, (2, 4, cfg.d_model), &Device::Cpu).unwrap();
        let xv = candle_core::Var::from_tensor(&x).unwrap();
        let mut h = Hooks::none();
        h.differentiable = true;
        let from = model
            .forward_from_site(&tokens, site, xv.as_tensor().clone(), &mut h)
            .unwrap();
        let mut h = Hooks::none();
        h.differentiable = true;
        h.intervene(
            &bridge::site_hook(site, 2).to_string(),
            Intervention::new(Action::Patch(x.clone())),
        );
        let patched = model.forward(&tokens, &mut h).unwrap();
        let d = crate::common::max_abs_diff(&from, &patched);
        assert!(d < 1e-5, "site {site}: {d}");
        let g = from.sum_all().unwrap().backward().unwrap();
        assert!(g.get(xv.as_tensor()).is_some(), "site {site}: no gradient to the input");
    }
}

/// The workbench's `:bridge on|off` on a tiny bridged model (a two-node circuit made here from the channels most
/// active on the lab's first prompt): with the bridge on, a run shows the dense model before and after the lab's
/// ablations carried through the bridge, the same numbers `bridge::steer` gives; off, nothing; on a model without
/// bridges the command is refused on the status bar.
#[test]
fn the_lab_steers_the_dense_model_through_the_bridge() {
    use circuitscope::analysis::bridge::site_label;
    use circuitscope::circuit::{model_fingerprint, CircuitFile, CircuitNode, ModelRef, NodeId};
    use circuitscope::data::tasks;
    use circuitscope::model::{Action, Hooks, Intervention, LoadOptions, ModelFiles};
    use circuitscope::tui::{self, command, ColorMode, OpenOptions, Reply, Request, Screen, Theme};

    let (dense, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let model = tiny_bridged(dense.path(), out.path());
    let task = tasks::resolve("single_double_quote").unwrap();
    let prompt = tasks::split(task.as_ref(), tasks::Split::Train, 1)[0].prompt.clone();
    let tok = circuitscope::tokenize::Tokenizer::load(model.join("tokenizer.json")).unwrap();
    let (sparse, _) = Gpt::load(&model, LoadOptions::default()).unwrap();
    // The task's prompts are longer than the test preset's context: the lab runs them with `:truncate`.
    let mut ids = tok.encode(&prompt).unwrap();
    ids.drain(..ids.len().saturating_sub(sparse.config.block_size));
    // The two channels of 0.mlp.post_act most active at the last token: ablating them changes something.
    let mut rec = Hooks::recording("0\\.mlp\\.post_act$").unwrap();
    sparse.forward_ids(&ids, &mut rec).unwrap();
    let acts: Vec<f32> = rec.recorded["0.mlp.post_act"]
        .squeeze(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut order: Vec<usize> = (0..acts.len()).collect();
    order.sort_by(|&a, &b| acts[b].abs().total_cmp(&acts[a].abs()));
    let (c1, c2) = (order[0].min(order[1]), order[0].max(order[1]));
    assert!(acts[c1] != 0.0 && acts[c2] != 0.0);
    let files = ModelFiles::locate(&model).unwrap();
    let ckpt = files.open_checkpoint(&sparse.config).unwrap();
    let mut circuit = CircuitFile::new(
        ModelRef {
            fingerprint: model_fingerprint(&ckpt, &sparse.config).unwrap(),
            name: None,
            path: None,
            num_total_nodes: sparse.config.num_nodes(),
        },
        "single_double_quote",
        "test: the two most active MLP channels",
    );
    for c in [c1, c2] {
        circuit.nodes.push(CircuitNode {
            id: NodeId::from_hook("0.mlp.post_act", c).unwrap(),
            ablated_loss: None,
        });
    }
    let circuit_path = out.path().join("circuit.json");
    circuit.save(&circuit_path).unwrap();

    let opts = OpenOptions {
        model: model.clone(),
        circuit: Some(circuit_path),
        task: "single_double_quote".into(),
        session: None,
        sae: None,
    };
    let l = tui::load(&opts, Theme::new(ColorMode::TrueColor)).unwrap();
    let (mut app, mut engine) = (l.app, l.engine);
    app.debounce = std::time::Duration::ZERO;
    command::run(&mut app, "truncate");
    tui::pump(&mut app, &mut engine);
    assert_eq!(app.lab.run.as_ref().unwrap().ids, ids);
    assert_eq!(
        app.bridge_dense.as_deref(),
        Some(dense.path().display().to_string().as_str())
    );
    assert!(app.lab.run.as_ref().unwrap().bridge.is_none(), "off until :bridge on");

    // On, no ablations: the dense model as it is, before = after, and its logit difference is the dense
    // model's own on the prompt.
    command::run(&mut app, "bridge on");
    tui::pump(&mut app, &mut engine);
    assert!(app.lab.bridge && app.status.contains("bridge on"), "{}", app.status);
    let run = app.lab.run.clone().unwrap();
    let b = run.bridge.clone().expect("a bridged run");
    assert_eq!(b.site, site_label(0));
    assert_eq!(b.top_before, b.top_after);
    assert_eq!(b.dense_delta_norm, 0.0);
    let (before, after) = b.logit_diff().expect("single-token targets");
    assert_eq!(before, after);
    let (dense_model, _) = Gpt::load(dense.path(), LoadOptions::default()).unwrap();
    let logits: Vec<f32> = dense_model
        .forward_ids(&ids, &mut Hooks::none())
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let targets = task.targets();
    let (ta, tb) = (
        tok.encode(&targets[0]).unwrap()[0] as usize,
        tok.encode(&targets[1]).unwrap()[0] as usize,
    );
    assert!(
        (before - (logits[ta] - logits[tb])).abs() < 1e-4,
        "{before} vs {}",
        logits[ta] - logits[tb]
    );

    // A zero ablation of the most active channel crosses after block 0's MLP and moves the dense model: the
    // numbers `bridge::steer` gives for the same edit.
    command::run(&mut app, &format!("ablate 0.mlp.post_act[{}]", order[0]));
    tui::pump(&mut app, &mut engine);
    let b = app.lab.run.clone().unwrap().bridge.expect("a bridged run");
    assert_eq!(b.site, "0.mlp");
    assert!(b.dense_delta_norm > 0.0);
    let (before2, after2) = b.logit_diff().unwrap();
    assert_eq!(before2, before);
    assert_ne!(after2, before2);
    let pair = bridge::open_pair(&model, sparse, None, LoadOptions::default()).unwrap();
    let edit = (
        "0.mlp.post_act".to_string(),
        Intervention::new(Action::Set(0.0)).channels(vec![order[0]]),
    );
    let o = bridge::steer(&pair, &ids, &[edit], 2).unwrap();
    let want = o.dense_after[ta] - o.dense_after[tb];
    assert!((after2 - want).abs() < 1e-4, "lab {after2} vs steer {want}");

    // The lab shows it.
    app.set_screen(Screen::Lab);
    let text = crate::common::screen_text(&crate::common::draw(&app, 120, 40));
    assert!(text.contains("dense via bridge at 0.mlp"), "{text}");

    // Off again: runs carry no bridge; a bad argument says what it takes.
    command::run(&mut app, "bridge off");
    tui::pump(&mut app, &mut engine);
    assert!(!app.lab.bridge && app.lab.run.as_ref().unwrap().bridge.is_none());
    command::run(&mut app, "bridge maybe");
    assert_eq!(app.status, "bridge takes on or off");

    // A model without bridges: refused on the status bar, nothing sent; the engine refuses it too.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let plain = OpenOptions {
        model: root.join("assets/models/tinypython-sparse"),
        circuit: Some(root.join("tests/fixtures/tui/bracket_counting.json")),
        task: "bracket_counting".into(),
        session: None,
        sae: None,
    };
    let l = tui::load(&plain, Theme::new(ColorMode::TrueColor)).unwrap();
    let (mut app, mut engine) = (l.app, l.engine);
    tui::pump(&mut app, &mut engine);
    assert!(app.bridge_dense.is_none());
    command::run(&mut app, "bridge on");
    assert!(app.status.contains("no bridges"), "{}", app.status);
    assert!(!app.lab.bridge && app.take_requests().is_empty());
    match engine.handle(Request::Bridge(true)) {
        Reply::Error(e) => assert!(e.contains("no bridges"), "{e}"),
        other => panic!("{other:?}"),
    }
}
