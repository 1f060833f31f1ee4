//! The framework lens against the Hugging Face GPT-2 fixture (../shared/fixtures/hf-gpt2/tiny): processed weights,
//! composition, copying scores, full circuits, the direct path, detectors, per-token loss and DLA, all against the
//! values TransformerLens computed (`processed.*`, `framework.*`), within 1e-4 (relative above 1).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use circuitscope::analysis::framework::{
    self as fw, circuits, detect, dla::FrozenUnembed, FrameworkWeights, HeadWeights, LayerWeights, Mat, MlpWeights,
    Nonlinearities, NormKind, NormParams,
};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/hf-gpt2/tiny")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_dir().join(name), &Device::Cpu).unwrap()
}

fn golden() -> HashMap<String, Tensor> {
    load("golden.safetensors")
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn mat(t: &Tensor) -> Mat {
    let (r, c) = t.dims2().unwrap();
    Mat::new(r, c, vals(t)).unwrap()
}

/// Within 1e-4, relative for values above 1.
#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * w.abs().max(1.0);
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

/// The raw Hugging Face weights in the framework layout (Conv1D weights are stored [in, out]).
fn raw_weights() -> FrameworkWeights {
    let t = load("model.safetensors");
    let g = |k: &str| &t[&format!("transformer.{k}")];
    let (d, h, dh) = (64, 4, 16);
    let ln = |k: &str| {
        Some(NormParams {
            w: vals(g(&format!("{k}.weight"))),
            b: Some(vals(g(&format!("{k}.bias")))),
        })
    };
    let layers = (0..2)
        .map(|l| {
            let p = |k: &str| format!("h.{l}.{k}");
            let qkv = mat(g(&p("attn.c_attn.weight"))); // (D, 3A)
            let qkv_b = vals(g(&p("attn.c_attn.bias")));
            let proj = mat(g(&p("attn.c_proj.weight"))); // (A, D)
            let heads = (0..h)
                .map(|hd| {
                    let read = |part: usize| {
                        let mut m = Mat::zeros(d, dh);
                        for r in 0..d {
                            for c in 0..dh {
                                m.data[r * dh + c] = qkv.at(r, part * d + hd * dh + c);
                            }
                        }
                        m
                    };
                    let b = |part: usize| qkv_b[part * d + hd * dh..part * d + (hd + 1) * dh].to_vec();
                    HeadWeights {
                        w_q: read(0),
                        w_k: read(1),
                        w_v: read(2),
                        w_o: Mat::new(dh, d, proj.data[hd * dh * d..(hd + 1) * dh * d].to_vec()).unwrap(),
                        b_q: b(0),
                        b_k: b(1),
                        b_v: b(2),
                    }
                })
                .collect();
            LayerWeights {
                ln1: ln(&p("ln_1")),
                ln2: ln(&p("ln_2")),
                heads,
                b_o: vals(g(&p("attn.c_proj.bias"))),
                mlp: Some(MlpWeights {
                    w_in: mat(g(&p("mlp.c_fc.weight"))),
                    b_in: vals(g(&p("mlp.c_fc.bias"))),
                    w_out: mat(g(&p("mlp.c_proj.weight"))),
                    b_out: vals(g(&p("mlp.c_proj.bias"))),
                }),
                sink_logit: None,
            }
        })
        .collect();
    let w_e = mat(g("wte.weight"));
    let w = FrameworkWeights {
        norm: NormKind::Layer { eps: 1e-5 },
        w_u: w_e.t(),
        b_u: vec![0.0; 256],
        w_e,
        w_pos: mat(g("wpe.weight")),
        bigram: None,
        ln_final: ln("ln_f"),
        layers,
        nonlinear: Nonlinearities::default(),
    };
    w.check().unwrap();
    w
}

fn processed() -> FrameworkWeights {
    let mut w = raw_weights();
    let steps = fw::process(&mut w);
    assert!(steps.iter().all(|s| s.applied), "{steps:?}");
    w
}

/// A plain GPT-2 forward on framework weights (LayerNorm, gelu_new), as a reference for the tests: logits
/// (T, V) and each layer's (H, T, T) pattern.
fn forward(w: &FrameworkWeights, tokens: &[u32]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let (t, d, dh) = (tokens.len(), w.d_model(), w.d_head());
    let layer_norm = |x: &[f32], p: &Option<NormParams>| -> Vec<f32> {
        x.chunks(d)
            .flat_map(|row| {
                let mean = row.iter().sum::<f32>() / d as f32;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
                let s = (var + 1e-5).sqrt();
                row.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let n = (v - mean) / s;
                        match p {
                            Some(p) => n * p.w[i] + p.b.as_ref().map_or(0.0, |b| b[i]),
                            None => n,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let rows = |x: Vec<f32>, cols: usize| Mat::new(x.len() / cols, cols, x).unwrap();
    let add_bias = |m: &mut Mat, b: &[f32]| {
        m.data
            .chunks_mut(b.len())
            .for_each(|r| r.iter_mut().zip(b).for_each(|(x, y)| *x += y))
    };
    let mut x: Vec<f32> = tokens
        .iter()
        .enumerate()
        .flat_map(|(p, &tok)| {
            w.w_e
                .row(tok as usize)
                .iter()
                .zip(w.w_pos.row(p))
                .map(|(a, b)| a + b)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut patterns = Vec::new();
    for layer in &w.layers {
        let a = rows(layer_norm(&x, &layer.ln1), d);
        let mut out = vec![0f32; t * d];
        let mut pat = Vec::new();
        for h in &layer.heads {
            let mut q = a.matmul(&h.w_q).unwrap();
            add_bias(&mut q, &h.b_q);
            let mut k = a.matmul(&h.w_k).unwrap();
            add_bias(&mut k, &h.b_k);
            let mut v = a.matmul(&h.w_v).unwrap();
            add_bias(&mut v, &h.b_v);
            let mut z = Mat::zeros(t, dh);
            for i in 0..t {
                let s: Vec<f32> = (0..=i)
                    .map(|j| q.row(i).iter().zip(k.row(j)).map(|(a, b)| a * b).sum::<f32>() / (dh as f32).sqrt())
                    .collect();
                let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = s.iter().map(|v| (v - m).exp()).collect();
                let tot: f32 = e.iter().sum();
                let mut row = vec![0f32; t];
                for j in 0..=i {
                    row[j] = e[j] / tot;
                    for c in 0..dh {
                        z.data[i * dh + c] += row[j] * v.at(j, c);
                    }
                }
                pat.extend(row);
            }
            let o = z.matmul(&h.w_o).unwrap();
            out.iter_mut().zip(&o.data).for_each(|(a, b)| *a += b);
        }
        patterns.push(pat);
        x.iter_mut()
            .zip(out.chunks(d).flat_map(|r| r.iter().zip(&layer.b_o).map(|(a, b)| a + b)))
            .for_each(|(x, o)| *x += o);
        let m = layer.mlp.as_ref().unwrap();
        let mut pre = rows(layer_norm(&x, &layer.ln2), d).matmul(&m.w_in).unwrap();
        add_bias(&mut pre, &m.b_in);
        pre.data.iter_mut().for_each(|v| {
            let u = *v;
            *v = 0.5 * u * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (u + 0.044715 * u.powi(3))).tanh())
        });
        let mut post = pre.matmul(&m.w_out).unwrap();
        add_bias(&mut post, &m.b_out);
        x.iter_mut().zip(&post.data).for_each(|(a, b)| *a += b);
    }
    let mut logits = rows(layer_norm(&x, &w.ln_final), d).matmul(&w.w_u).unwrap();
    add_bias(&mut logits, &w.b_u);
    (logits.data, patterns)
}

fn log_softmax(logits: &[f32], v: usize) -> Vec<f32> {
    logits
        .chunks(v)
        .flat_map(|r| {
            let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + r.iter().map(|x| (x - m).exp()).sum::<f32>().ln();
            r.iter().map(move |x| x - lse).collect::<Vec<_>>()
        })
        .collect()
}

fn golden_tokens(g: &HashMap<String, Tensor>, key: &str, row: usize) -> Vec<u32> {
    let t = &g[key];
    let n = t.dims()[1];
    vals(t)[row * n..(row + 1) * n].iter().map(|&x| x as u32).collect()
}

#[test]
fn processed_weights_match_transformer_lens() {
    let g = golden();
    let w = processed();
    let key = |k: &str| vals(&g[&format!("processed.{k}")]);
    close("W_E", &w.w_e.data, &key("embed.W_E"));
    close("W_pos", &w.w_pos.data, &key("pos_embed.W_pos"));
    close("W_U", &w.w_u.data, &key("unembed.W_U"));
    close("b_U", &w.b_u, &key("unembed.b_U"));
    for (l, layer) in w.layers.iter().enumerate() {
        let p = |k: &str| key(&format!("blocks.{l}.{k}"));
        let cat = |f: &dyn Fn(&HeadWeights) -> Vec<f32>| layer.heads.iter().flat_map(f).collect::<Vec<f32>>();
        close("W_Q", &cat(&|h| h.w_q.data.clone()), &p("attn.W_Q"));
        close("W_K", &cat(&|h| h.w_k.data.clone()), &p("attn.W_K"));
        close("W_V", &cat(&|h| h.w_v.data.clone()), &p("attn.W_V"));
        close("W_O", &cat(&|h| h.w_o.data.clone()), &p("attn.W_O"));
        close("b_Q", &cat(&|h| h.b_q.clone()), &p("attn.b_Q"));
        close("b_K", &cat(&|h| h.b_k.clone()), &p("attn.b_K"));
        close("b_V", &cat(&|h| h.b_v.clone()), &p("attn.b_V"));
        close("b_O", &layer.b_o, &p("attn.b_O"));
        let m = layer.mlp.as_ref().unwrap();
        close("W_in", &m.w_in.data, &p("mlp.W_in"));
        close("b_in", &m.b_in, &p("mlp.b_in"));
        close("W_out", &m.w_out.data, &p("mlp.W_out"));
        close("b_out", &m.b_out, &p("mlp.b_out"));
    }
}

#[test]
fn processing_keeps_log_probabilities_and_the_reference_forward_matches() {
    let g = golden();
    let (raw, proc_) = (raw_weights(), processed());
    let tl = vals(&g["tl.logits"]);
    let patterns = vals(&g["hook.blocks.1.attn.hook_pattern"]);
    for row in 0..2 {
        let tokens = golden_tokens(&g, "tokens", row);
        let (t, v) = (tokens.len(), 256);
        let (raw_logits, raw_pat) = forward(&raw, &tokens);
        close("raw logits", &raw_logits, &tl[row * t * v..(row + 1) * t * v]);
        close(
            "layer 1 pattern",
            &raw_pat[1],
            &patterns[row * 4 * t * t..(row + 1) * 4 * t * t],
        );
        let (p_logits, p_pat) = forward(&proc_, &tokens);
        close("log-probs", &log_softmax(&p_logits, v), &log_softmax(&raw_logits, v));
        close("processed pattern", &p_pat[1], &raw_pat[1]);
    }
}

#[test]
fn circuits_match_transformer_lens() {
    let g = golden();
    let w = processed();
    let comp = fw::composition(&w, 50, 1).unwrap();
    close("composition_Q", &comp.q, &vals(&g["framework.composition_Q"]));
    close("composition_K", &comp.k, &vals(&g["framework.composition_K"]));
    close("composition_V", &comp.v, &vals(&g["framework.composition_V"]));
    assert!(comp.baseline.mean > 0.0 && comp.baseline.mean < 1.0 && comp.baseline.std > 0.0);
    close(
        "ov_copying_score",
        &fw::ov_copying_scores(&w).unwrap(),
        &vals(&g["framework.ov_copying_score"]),
    );
    for h in 0..2 {
        let ov = fw::full_ov(&w, 1, h).unwrap();
        let want = vals(&g[&format!("framework.full_ov.1.{h}")]);
        close("full_ov", &ov.materialise().unwrap().data, &want);
        // The factored top entries are the largest of the materialised matrix.
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let top = ov.top_entries(5, false).unwrap();
        close(
            "full_ov top",
            &top.iter().map(|e| e.value).collect::<Vec<_>>(),
            &sorted[..5],
        );
        assert!((want[top[0].row * 256 + top[0].col] - top[0].value).abs() < 1e-4);
        let qk = fw::full_qk(&w, 1, h).unwrap().materialise().unwrap();
        close("full_qk", &qk.data, &vals(&g[&format!("framework.full_qk.1.{h}")]));
        let pos = fw::pos_qk(&w, 1, h).unwrap().materialise().unwrap();
        close("pos_qk", &pos.data, &vals(&g[&format!("framework.pos_qk.1.{h}")]));
    }
    let direct = fw::direct_path(&w).unwrap().materialise().unwrap();
    close("direct_path", &direct.data, &vals(&g["framework.direct_path"]));
}

#[test]
fn batched_layer_circuits_equal_the_per_head_ones_and_the_bounded_scan_is_exact_here() {
    let g = golden();
    let w = processed();
    let emb = fw::Embeddings::new(&w).unwrap();
    for l in 0..w.n_layers() {
        let batched = fw::layer_circuits(&w, &emb, l).unwrap();
        assert_eq!(batched.len(), w.n_heads());
        for (h, hc) in batched.iter().enumerate() {
            let (ov, qk) = (fw::full_ov(&w, l, h).unwrap(), fw::full_qk(&w, l, h).unwrap());
            for (what, a, b) in [
                ("ov left", &hc.ov.left, &ov.left),
                ("ov right", &hc.ov.right, &ov.right),
                ("qk left", &hc.qk.left, &qk.left),
                ("qk right", &hc.qk.right, &qk.right),
            ] {
                assert_eq!((a.rows, a.cols), (b.rows, b.cols), "{what}");
                close(what, &a.data, &b.data);
            }
            // The fixture keeps the full OV circuits of layer 1, heads 0 and 1.
            if l == 1 && h < 2 {
                let want = vals(&g[&format!("framework.full_ov.1.{h}")]);
                close("batched full_ov", &hc.ov.materialise().unwrap().data, &want);
            }
            // A vocabulary of 256 is within the default budget: the scan covers it and is exact.
            let t = hc.ov.top_entries_within(5, false, 256).unwrap();
            assert!(t.exact && t.unscanned_bound.is_none());
            assert_eq!(t.entries, ov.top_entries(5, false).unwrap());
        }
    }
    assert!(fw::layer_circuits(&w, &emb, w.n_layers()).is_err());
}

#[test]
fn detectors_and_repeated_loss_match_transformer_lens() {
    let g = golden();
    let w = processed();
    let tokens = golden_tokens(&g, "framework.repeated_tokens", 0);
    let t = tokens.len();
    let (logits, patterns) = forward(&w, &tokens);
    for det in detect::Detector::ALL {
        let dp = det.pattern(&tokens);
        let got: Vec<f32> = patterns
            .iter()
            .flat_map(|p| p.chunks(t * t).map(|hp| detect::score(hp, &dp)).collect::<Vec<_>>())
            .collect();
        close(det.name(), &got, &vals(&g[&format!("framework.detect_{}", det.name())]));
    }
    let losses = detect::loss_per_token(&logits, 256, &tokens);
    close(
        "repeated_loss_per_token",
        &losses,
        &vals(&g["framework.repeated_loss_per_token"]),
    );
    assert!(detect::induction_loss(&losses, &tokens).is_some());
}

#[test]
fn dla_matches_transformer_lens_and_sums_to_the_logit_difference() {
    let g = golden();
    let w = processed();
    let target: u32 = 105;
    let alt: u32 = 218;
    let last = |key: &str, b: usize| {
        let t = &g[&format!("hook.{key}")];
        let dims = t.dims().to_vec();
        let per_b: usize = dims[1..].iter().product();
        let width = per_b / dims[1];
        let all = vals(t);
        all[b * per_b + (dims[1] - 1) * width..b * per_b + dims[1] * width].to_vec()
    };
    let labels = [
        "hook_embed",
        "hook_pos_embed",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
    ];
    let want_comp = vals(&g["framework.dla_components"]); // [6, 2]
    let want_heads = vals(&g["framework.dla_heads"]); // [8, 2]
                                                      // The value biases the processing moved into b_O: the raw model's z carries them.
    let mut before_value_fold = raw_weights();
    fw::process::fold_block_norms(&mut before_value_fold);
    let logits = vals(&g["tl.logits"]);
    for b in 0..2 {
        let resid = last("blocks.1.hook_resid_post", b);
        let frozen = FrozenUnembed::new(&w, &resid, target, Some(alt)).unwrap();
        let scale = last("ln_final.hook_scale", b)[0];
        assert!((frozen.scale - scale).abs() < 1e-5 * scale.max(1.0));
        let parts: Vec<f32> = labels.iter().map(|k| frozen.attribute(&last(k, b))).collect();
        close(
            "dla_components",
            &parts,
            &(0..6).map(|r| want_comp[r * 2 + b]).collect::<Vec<_>>(),
        );
        let end = (b * 24 + 23) * 256;
        let diff = logits[end + target as usize] - logits[end + alt as usize];
        let sum: f32 = parts.iter().sum::<f32>() + frozen.constant;
        assert!((sum - diff).abs() < 1e-3, "parts sum {sum} vs logit difference {diff}");
        let mut heads = Vec::new();
        for l in 0..2 {
            let z = last(&format!("blocks.{l}.attn.hook_z"), b); // (H * d_head)
            for h in 0..4 {
                let hw = &before_value_fold.layers[l].heads[h];
                let zh: Vec<f32> = z[h * 16..(h + 1) * 16]
                    .iter()
                    .zip(&hw.b_v)
                    .map(|(a, b)| a - b)
                    .collect();
                heads.push(frozen.attribute(&w.layers[l].heads[h].w_o.left_mul(&zh)));
            }
        }
        close(
            "dla_heads",
            &heads,
            &(0..8).map(|r| want_heads[r * 2 + b]).collect::<Vec<_>>(),
        );
    }
}

#[test]
fn constructed_heads_score_as_the_paper_says() {
    let mut w = processed();
    // Identity OV: W_V = [I; 0] (d_model, d_head), W_O = [I, 0] (d_head, d_model) → W_V·W_O is a projection.
    let h = &mut w.layers[0].heads[0];
    h.w_v = Mat::zeros(64, 16);
    h.w_o = Mat::zeros(16, 64);
    for c in 0..16 {
        h.w_v.data[c * 16 + c] = 1.0;
        h.w_o.data[c * 64 + c] = 1.0;
    }
    let scores = fw::ov_copying_scores(&w).unwrap();
    assert!((scores[0] - 1.0).abs() < 1e-6, "{}", scores[0]);
    // A negated identity copies nothing: -1.
    w.layers[0].heads[0].w_o.data.iter_mut().for_each(|x| *x = -*x);
    assert!((fw::ov_copying_scores(&w).unwrap()[0] + 1.0).abs() < 1e-6);
    // ‖AB‖_F ≤ ‖A‖_F·‖B‖_F: every composition score lies in [0, 1].
    let c = circuits::composition(&w, 10, 2).unwrap();
    assert!(c.v.iter().all(|&s| (0.0..=1.0 + 1e-6).contains(&s)));
}

mod cli {
    use std::path::{Path, PathBuf};

    use candle_core::Device;
    use serde_json::Value;
    use tempfile::TempDir;

    fn fixture(variant: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reference-gpt")
            .join(variant)
            .to_str()
            .unwrap()
            .to_string()
    }

    use crate::common::cli_parts as run;

    fn json(args: &[&str]) -> Value {
        let (ok, stdout, stderr) = run(args);
        assert!(ok, "{args:?} failed: {stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// One `error: ` line naming every needle, non-zero exit.
    fn refused(args: &[&str], needles: &[&str]) {
        let (ok, _, stderr) = run(args);
        assert!(!ok, "{args:?} succeeded");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: "))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        for n in needles {
            assert!(lines[0].contains(n), "`{}` does not mention `{n}`", lines[0]);
        }
    }

    #[test]
    fn heads_json_and_dump_on_a_sink_model() {
        let tmp = TempDir::new().unwrap();
        let dump: PathBuf = tmp.path().join("heads.safetensors");
        let model = fixture("rms_sink_topk_bigram");
        let v = json(&[
            "heads",
            "--model",
            &model,
            "--json",
            "--fold",
            "--dump",
            dump.to_str().unwrap(),
        ]);
        for key in [
            "model",
            "fold",
            "processing",
            "n_layers",
            "n_heads",
            "d_head",
            "heads",
            "composition",
            "direct_path_top",
            "direct_path_includes_bigram",
            "detector_tokens",
            "induction_loss",
            "dump",
        ] {
            assert!(v.get(key).is_some(), "missing key {key}");
        }
        let (l, h) = (
            v["n_layers"].as_u64().unwrap() as usize,
            v["n_heads"].as_u64().unwrap() as usize,
        );
        let heads = v["heads"].as_array().unwrap();
        assert_eq!(heads.len(), l * h);
        for s in heads {
            for key in ["previous_token", "duplicate_token", "induction", "sink_share"] {
                let x = s[key].as_f64().unwrap();
                assert!((0.0..=1.0 + 1e-6).contains(&x), "{key} = {x}");
            }
            assert!(s["sink_logit"].is_number());
            assert!(s["ov_top"].as_array().unwrap().len() <= 5);
            // The fixture's vocabulary is within the default row budget: every table is exact.
            for key in ["ov_top_scan", "qk_top_scan"] {
                assert_eq!(s[key]["exact"], true, "{key}: {}", s[key]);
                assert_eq!(s[key]["rows_scanned"], s[key]["rows"]);
                assert!(s[key]["unscanned_bound"].is_null());
            }
        }
        assert_eq!(v["direct_path_top_scan"]["exact"], true);
        let steps: Vec<(String, bool)> = v["processing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["step"].as_str().unwrap().to_string(), s["applied"].as_bool().unwrap()))
            .collect();
        // RMSNorm with AbsTopK on the reads and sinks: only the final norm and the unembedding are processed.
        assert!(steps.contains(&("fold_norms".into(), false)));
        assert!(steps.contains(&("fold_final_norm".into(), true)));
        assert!(steps.contains(&("centre_writing_weights".into(), false)));
        assert!(steps.contains(&("fold_value_biases".into(), false)));
        assert!(v["induction_loss"]["second_half"].is_number());
        assert_eq!(v["direct_path_includes_bigram"], true);

        let t = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
        for k in ["composition_Q", "composition_K", "composition_V"] {
            assert_eq!(t[k].dims(), &[l, h, l, h]);
        }
        for k in [
            "ov_copying_score",
            "detect_previous_token",
            "detect_duplicate_token",
            "detect_induction",
            "sink_share",
        ] {
            assert_eq!(t[k].dims(), &[l, h], "{k}");
        }
        let vocab = t["direct_path"].dims()[0];
        assert_eq!(t["direct_path"].dims(), &[vocab, vocab]);
        assert_eq!(t["direct_path_with_bigram"].dims(), &[vocab, vocab]);
        // The dump holds the numbers the JSON shows.
        let ind: Vec<f32> = t["detect_induction"].flatten_all().unwrap().to_vec1().unwrap();
        for (i, s) in heads.iter().enumerate() {
            assert!((s["induction"].as_f64().unwrap() as f32 - ind[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn heads_text_and_given_tokens() {
        let model = fixture("layernorm_tied_relu");
        let (ok, out, err) = run(&["heads", "--model", &model, "--repeated-tokens", "3,9,4,3,9,4", "--fold"]);
        assert!(ok, "{err}");
        // A LayerNorm model without AbsTopK or sinks: every processing step is exact and runs.
        for needle in [
            "L0H0",
            "centre_writing_weights: applied",
            "fold_value_biases: applied",
            "composition (random baseline",
            "direct path",
            "induction loss: first half",
        ] {
            assert!(out.contains(needle), "no `{needle}` in:\n{out}");
        }
        // A budget of 2 rows cannot cover the vocabulary: the tables are marked and say how far they went.
        let (ok, out, err) = run(&[
            "heads",
            "--model",
            &model,
            "--repeated-tokens",
            "3,9,4,3,9,4",
            "--top-rows",
            "2",
        ]);
        assert!(ok, "{err}");
        assert!(out.contains("≈") && out.contains("not proven exact"), "{out}");
        let v = json(&[
            "heads",
            "--model",
            &model,
            "--repeated-tokens",
            "3,9,4,1",
            "--json",
            "--top-rows",
            "2",
        ]);
        assert_eq!(v["top_rows"], 2);
        let scans: Vec<&Value> = v["heads"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| [&s["ov_top_scan"], &s["qk_top_scan"]])
            .chain([&v["direct_path_top_scan"]])
            .collect();
        assert!(scans.iter().any(|s| s["exact"] == false));
        for s in scans {
            if s["exact"] == false {
                assert_eq!(s["rows_scanned"], 2);
                assert!(s["unscanned_bound"].as_f64().unwrap() > 0.0);
            }
        }
        let v = json(&["heads", "--model", &model, "--repeated-tokens", "3,9,4,1", "--json"]);
        assert_eq!(v["detector_tokens"], serde_json::json!([[3, 9, 4, 1]]));
        assert!(v["induction_loss"].is_null());
        assert!(v["heads"][0]["sink_share"].is_null());
    }

    #[test]
    fn heads_refuses_bad_input() {
        let model = fixture("layernorm_tied_relu");
        refused(
            &["heads", "--model", &model, "--repeated-tokens", "3,100000"],
            &["100000"],
        );
        refused(
            &["heads", "--model", &model, "--repeated-tokens", "3"],
            &["at least 2 tokens"],
        );
        refused(&["heads", "--model", &fixture("cat_pos_emb")], &["d_pos_emb"]);
        refused(&["heads", "--model", "/nonexistent/model"], &["/nonexistent/model"]);
    }
}
