//! Parity with the reference implementation: logits and every hook within 1e-4 of the goldens made by the
//! reference code, through the .pt path, after `convert` to dense safetensors and after `convert` to CSR, plus
//! the `interv.*` goldens through the intervention API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use circuitscope::cli::convert::convert;
use circuitscope::model::{Action, Gpt, Hooks, Intervention, LoadOptions};

use crate::common::max_abs_diff;

const TOL: f32 = 1e-4;
const VARIANTS: [&str; 4] = [
    "rms_sink_topk_bigram",
    "layernorm_tied_relu",
    "cat_pos_emb",
    "dhead_resid_relu",
];

fn fixture(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference-gpt")
        .join(variant)
}

struct Golden {
    tensors: HashMap<String, Tensor>,
    interventions: Option<serde_json::Value>,
}

fn golden(variant: &str) -> Golden {
    let path = fixture(variant).join("golden.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let interventions = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("interventions"))
        .map(|s| serde_json::from_str(s).unwrap());
    Golden { tensors, interventions }
}

/// Runs the golden tokens and compares logits and every recorded hook.
fn check_model(model: &Gpt, g: &Golden, what: &str) {
    for differentiable in [false, true] {
        check_mode(
            model,
            g,
            &format!("{what} (differentiable: {differentiable})"),
            differentiable,
        );
    }
}

fn check_mode(model: &Gpt, g: &Golden, what: &str, differentiable: bool) {
    let tokens = g.tensors["tokens"].to_dtype(candle_core::DType::U32).unwrap();
    let mut hooks = Hooks::recording(".*").unwrap();
    hooks.differentiable = differentiable;
    let logits = model.forward(&tokens, &mut hooks).unwrap();
    let d = max_abs_diff(&logits, &g.tensors["logits"]);
    assert!(d < TOL, "{what}: logits differ by {d}");
    let mut checked = 0;
    for (name, want) in &g.tensors {
        let Some(hook) = name.strip_prefix("hook.") else {
            continue;
        };
        let got = hooks
            .recorded
            .get(hook)
            .unwrap_or_else(|| panic!("{what}: hook {hook} not recorded"));
        let d = max_abs_diff(got, want);
        assert!(d < TOL, "{what}: hook {hook} differs by {d}");
        checked += 1;
    }
    assert_eq!(
        checked,
        hooks.recorded.len(),
        "{what}: we record hooks the reference does not"
    );
    if let Some(ivs) = &g.interventions {
        let mut hooks = Hooks::recording("final_resid").unwrap();
        hooks.differentiable = differentiable;
        for (hook, spec) in ivs.as_object().unwrap() {
            let channels: Vec<usize> = spec["channels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() as usize)
                .collect();
            let value = spec["value"].as_f64().unwrap() as f32;
            hooks.intervene(hook, Intervention::new(Action::Set(value)).channels(channels));
        }
        let logits = model.forward(&tokens, &mut hooks).unwrap();
        let d = max_abs_diff(&logits, &g.tensors["interv.logits"]);
        assert!(d < TOL, "{what}: intervened logits differ by {d}");
        let d = max_abs_diff(&hooks.recorded["final_resid"], &g.tensors["interv.hook.final_resid"]);
        assert!(d < TOL, "{what}: intervened final_resid differs by {d}");
    }
}

#[test]
fn pt_checkpoints_match_reference() {
    for v in VARIANTS {
        let g = golden(v);
        for (opts, label) in [(LoadOptions::ALL_DENSE, "dense"), (LoadOptions::ALL_SPARSE, "csr")] {
            let (model, _) = Gpt::load(&fixture(v), opts).unwrap();
            check_model(&model, &g, &format!("{v} .pt {label}"));
        }
    }
}

#[test]
fn converted_checkpoints_match_reference() {
    for v in VARIANTS {
        let g = golden(v);
        for (sparse_below, label) in [(1e-9, "dense safetensors"), (1.0, "csr safetensors")] {
            let dir = tempfile::tempdir().unwrap();
            let report = convert(&fixture(v), dir.path(), sparse_below, false).unwrap();
            if sparse_below >= 1.0 {
                assert!(!report.csr_matrices.is_empty());
            } else {
                assert!(report.csr_matrices.is_empty());
            }
            for (opts, path) in [
                (LoadOptions::ALL_DENSE, "dense path"),
                (LoadOptions::ALL_SPARSE, "csr path"),
            ] {
                let (model, warnings) = Gpt::load(dir.path(), opts).unwrap();
                assert!(warnings.is_empty(), "{warnings:?}");
                check_model(&model, &g, &format!("{v} {label} {path}"));
            }
        }
    }
}

#[test]
fn interventions_exist_in_fixtures() {
    // Guards against the intervention check silently running on nothing.
    let n = VARIANTS.iter().filter(|v| golden(v).interventions.is_some()).count();
    assert!(n >= 2, "only {n} fixtures carry interventions");
}
