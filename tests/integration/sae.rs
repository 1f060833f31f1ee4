//! Sparse autoencoders (issue 16): SAELens's files read and computed as SAELens computes them (golden
//! encode/decode of `tests/fixtures/saelens`), hostile SAE folders refused in one line, and `sae train` /
//! `sae eval` end to end on the bundled model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use circuitscope::analysis::sae::{Architecture, Sae};
use circuitscope::model::{Gpt, HookName, Hooks, LoadOptions};
use tempfile::TempDir;

use crate::common::{cli, cli_err, max_abs_diff};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/saelens")
}

fn hf_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/hf-gpt2/tiny")
}

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models").join(name)
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("golden.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn saelens_saes_encode_and_decode_as_saelens_does() {
    let g = golden();
    let x = &g["input"];
    for (name, arch, k) in [
        ("topk", Architecture::TopK, Some(8)),
        ("standard", Architecture::Relu, None),
    ] {
        let sae = Sae::load(&fixtures().join(name), 2).unwrap();
        assert_eq!(sae.config.hook, HookName::FinalResid, "{name}");
        assert_eq!((sae.config.architecture, sae.config.k), (arch, k), "{name}");
        assert_eq!((sae.config.d_in, sae.config.n_latents), (64, 256));
        let z = sae.encode(x).unwrap();
        let acts = &g[&format!("{name}.feature_acts")];
        assert!(
            max_abs_diff(&z, acts) < 1e-5,
            "{name}: feature acts differ by {}",
            max_abs_diff(&z, acts)
        );
        // The same latents fire, not just nearly the same values.
        let support = |t: &Tensor| {
            t.gt(0f32)
                .unwrap()
                .to_dtype(DType::U32)
                .unwrap()
                .to_vec2::<u32>()
                .unwrap()
        };
        assert_eq!(support(&z), support(acts), "{name}");
        let out = sae.decode(&z).unwrap();
        let want = &g[&format!("{name}.sae_out")];
        assert!(
            max_abs_diff(&out, want) < 1e-5,
            "{name}: sae_out differs by {}",
            max_abs_diff(&out, want)
        );
        if let Some(k) = k {
            for row in support(&z) {
                assert!(row.iter().sum::<u32>() as usize <= k);
            }
        }
    }
}

/// The golden input is `blocks.1.hook_resid_post` of the hf-gpt2 fixture; SAELens's hook name maps onto our
/// `final_resid`, whose recorded values are that input.
#[test]
fn saelens_hook_name_reads_the_same_activations() {
    let g = golden();
    let hf: HashMap<String, Tensor> =
        candle_core::safetensors::load(hf_tiny().join("golden.safetensors"), &Device::Cpu).unwrap();
    let tokens = hf["tokens"].to_dtype(DType::U32).unwrap();
    let (model, _) = Gpt::load(&hf_tiny(), LoadOptions::default()).unwrap();
    let sae = Sae::load(&fixtures().join("topk"), model.config.n_layer).unwrap();
    sae.check_model(&model.config, None).unwrap();
    let name = sae.config.hook.to_string();
    let mut hooks = Hooks::recording(&(regex::escape(&name) + "$")).unwrap();
    model.forward(&tokens, &mut hooks).unwrap();
    let got = hooks.recorded[&name].reshape(((), 64)).unwrap();
    assert!(max_abs_diff(&got, &g["input"]) < 1e-4);
}

#[test]
fn our_format_round_trips() {
    let tmp = TempDir::new().unwrap();
    let sae = Sae::load(&fixtures().join("topk"), 2).unwrap();
    let dir = tmp.path().join("ours");
    sae.save(&dir).unwrap();
    assert!(dir.join("sae.json").is_file() && dir.join("sae.safetensors").is_file());
    let back = Sae::load(&dir, 2).unwrap();
    assert_eq!(back.config, sae.config);
    for ((n, a), (_, b)) in sae.named_tensors().iter().zip(back.named_tensors()) {
        assert_eq!(max_abs_diff(a, b), 0.0, "{n}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tensor to write: name, shape, values.
type Named = (&'static str, Vec<usize>, Vec<f32>);

/// Writes SAELens's weights file with `tensors`.
fn write_weights(path: &Path, tensors: &[Named]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, shape, v)| {
            (
                n.to_string(),
                Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn hostile_sae_folders_are_refused_in_one_line() {
    let tmp = TempDir::new().unwrap();
    let model = hf_tiny();
    let good = fixtures().join("topk");
    let weights = |shape_enc: Vec<usize>, drop: Option<&str>, nan: bool| {
        let n_enc: usize = shape_enc.iter().product();
        let mut dec = vec![0.1f32; 256 * 64];
        if nan {
            dec[17] = f32::NAN;
        }
        let all = vec![
            ("W_enc", shape_enc, vec![0.1f32; n_enc]),
            ("W_dec", vec![256, 64], dec),
            ("b_enc", vec![256], vec![0f32; 256]),
            ("b_dec", vec![64], vec![0f32; 64]),
        ];
        all.into_iter().filter(|(n, _, _)| Some(*n) != drop).collect::<Vec<_>>()
    };
    let case = |name: &str, cfg: &str, tensors: Option<Vec<Named>>| -> PathBuf {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cfg.json"), cfg).unwrap();
        match tensors {
            Some(t) => write_weights(&dir.join("sae_weights.safetensors"), &t),
            None => {
                std::fs::write(dir.join("sae_weights.safetensors"), b"\x10\0\0\0\0\0\0\0{not json").unwrap();
            }
        }
        dir
    };
    let cfg = std::fs::read_to_string(good.join("cfg.json")).unwrap();
    let eval = |dir: &Path, needles: &[&str]| {
        cli_err(&["sae", "eval", "--model", s(&model), "--sae", s(dir)], needles);
    };
    eval(
        &case("shape", &cfg, Some(weights(vec![64, 255], None, false))),
        &["W_enc", "[64, 256]", "[64, 255]"],
    );
    eval(
        &case("missing", &cfg, Some(weights(vec![64, 256], Some("b_dec"), false))),
        &["b_dec", "missing"],
    );
    eval(
        &case("nan", &cfg, Some(weights(vec![64, 256], None, true))),
        &["W_dec", "NaN"],
    );
    eval(&case("corrupt", &cfg, None), &["sae_weights.safetensors"]);
    let jump = cfg.replace("\"topk\"", "\"jumprelu\"");
    eval(
        &case("arch", &jump, Some(weights(vec![64, 256], None, false))),
        &["cfg.json", "jumprelu"],
    );
    let wide = cfg.replace("\"d_in\": 64", "\"d_in\": 65");
    let w65 = vec![
        ("W_enc", vec![65, 256], vec![0.1f32; 65 * 256]),
        ("W_dec", vec![256, 65], vec![0.1f32; 256 * 65]),
        ("b_enc", vec![256], vec![0f32; 256]),
        ("b_dec", vec![65], vec![0f32; 65]),
    ];
    eval(&case("width", &wide, Some(w65)), &["d_in 65", "64 wide"]);
    eval(
        &case("json", "{\"d_in\": ", Some(weights(vec![64, 256], None, false))),
        &["cfg.json"],
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    eval(&empty, &["not an SAE folder"]);
    eval(&tmp.path().join("absent"), &["absent"]);
}

#[test]
fn train_then_eval_on_the_bundled_model() {
    let tmp = TempDir::new().unwrap();
    let model = bundled("tinypython-dense");
    let out = tmp.path().join("sae");
    let common = [
        "sae",
        "train",
        "--model",
        s(&model),
        "--hook",
        "1.resid_mid",
        "--latents",
        "256",
        "--k",
        "8",
        "--tokens",
        "4096",
        "--batch-seqs",
        "4",
        "--pool-tokens",
        "20000",
        "--out",
        s(&out),
    ];
    let mut args = common.to_vec();
    args.extend(["--json", "--stop-after", "3"]);
    let r = cli(&args);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["steps"].as_u64(), v["finished"].as_bool()), (Some(3), Some(false)));
    assert!(!out.join("sae.json").exists());
    let mut args = common.to_vec();
    args.extend(["--json", "--resume"]);
    let r = cli(&args);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["steps"].as_u64(), v["finished"].as_bool()), (Some(8), Some(true)));
    for key in ["tokens_per_s", "final_nmse", "dead_fraction", "seconds"] {
        assert!(v[key].is_number(), "{key}");
    }

    let r = cli(&[
        "sae",
        "eval",
        "--model",
        s(&model),
        "--sae",
        s(&out),
        "--tokens",
        "512",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let e: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for key in [
        "l0",
        "fvu",
        "cosine",
        "ce_clean",
        "ce_sae",
        "ce_zero_ablation",
        "ce_mean_ablation",
        "ce_recovered_zero",
        "ce_recovered_mean",
        "kl",
        "dead_fraction",
        "dense_fraction",
    ] {
        assert!(e[key].is_number(), "{key}: {}", r.stdout);
    }
    assert_eq!(e["hook"], "1.resid_mid");
    assert!(e["l0"].as_f64().unwrap() <= 8.0);
    let hist = e["density_histogram"].as_array().unwrap();
    let live: u64 = hist.iter().map(|b| b["latents"].as_u64().unwrap()).sum();
    let dead = (e["dead_fraction"].as_f64().unwrap() * 256.0).round() as u64;
    assert_eq!(live + dead, 256);
    let text = cli(&["sae", "eval", "--model", s(&model), "--sae", s(&out), "--tokens", "256"]);
    assert!(
        text.ok && text.stdout.contains("CE recovered (zero)"),
        "{}",
        text.stdout
    );

    // The SAE belongs to its model; bad options are one line each.
    cli_err(
        &[
            "sae",
            "eval",
            "--model",
            s(&bundled("tinypython-sparse")),
            "--sae",
            s(&out),
        ],
        &["fingerprint"],
    );
    let mut args = common.to_vec();
    args.push("--resume");
    args[7] = "512";
    cli_err(&args, &["train_config.json", "other options"]);
    cli_err(&common, &["--resume"]);
    let other = tmp.path().join("other");
    let bad = |hook: &str, k: &str, needles: &[&str]| {
        cli_err(
            &[
                "sae",
                "train",
                "--model",
                s(&model),
                "--hook",
                hook,
                "--latents",
                "64",
                "--k",
                k,
                "--out",
                s(&other),
            ],
            needles,
        );
    };
    bad("7.resid_mid", "4", &["--hook", "layers"]);
    bad("1.attn.pattern", "4", &["pattern"]);
    bad("1.resid_middle", "4", &["1.resid_middle"]);
    bad("1.resid_mid", "0", &["--k"]);
    bad("1.resid_mid", "65", &["--k"]);
}

/// `run --sae --steer --generate` with SAELens's TopK SAE on the hf-gpt2 fixture (bytes as tokens).
#[test]
fn run_steers_with_a_decoder_direction_and_generates() {
    let model = hf_tiny();
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tokenizer.json");
    let sae = fixtures().join("topk");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "run",
            "--model",
            s(&model),
            "--tokenizer",
            s(&tok),
            "--prompt",
            "abc ab",
            "--sae",
            s(&sae),
            "--json",
        ];
        args.extend(extra);
        let r = cli(&args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let v = run(&["--steer", "3=6@-1", "--generate", "5"]);
    let st = &v["steer"];
    assert_eq!(st["hook"], "final_resid");
    assert!(st["change"]["kl"].as_f64().unwrap() > 1e-3, "{st}");
    assert_eq!(st["change"]["moved"].as_array().unwrap().len(), 10);
    let (g, b) = (&st["generated"]["ids"], &st["baseline"]["ids"]);
    assert_eq!((g.as_array().unwrap().len(), b.as_array().unwrap().len()), (5, 5));
    // The top-level distribution is the steered one: its first token is the steered generation's first.
    assert_eq!(v["top"][0]["id"], g[0]);
    // Scale 0 changes nothing.
    let zero = run(&["--steer", "3=0", "--generate", "5"]);
    assert_eq!(zero["steer"]["change"]["kl"].as_f64().unwrap(), 0.0);
    assert_eq!(zero["steer"]["generated"], zero["steer"]["baseline"]);
    // Sampling is reproducible by seed; without --steer there is no change and no baseline.
    let a = run(&["--generate", "6", "--seed", "7", "--temperature", "1.5"]);
    let b = run(&["--generate", "6", "--seed", "7", "--temperature", "1.5"]);
    assert_eq!(a["steer"]["generated"], b["steer"]["generated"]);
    assert!(a["steer"]["change"].is_null() && a["steer"]["baseline"].is_null());
    assert!(run(&[])["steer"].is_null());

    let base = [
        "run",
        "--model",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--prompt",
        "abc ab",
    ];
    let bad = |extra: &[&str], needles: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        cli_err(&args, needles);
    };
    bad(&["--steer", "3=1"], &["--sae"]);
    bad(&["--sae", s(&sae), "--steer", "256=1"], &["256", "256 latents"]);
    bad(&["--sae", s(&sae), "--steer", "x=1"], &["`x`"]);
    bad(&["--sae", s(&sae), "--steer", "3=big"], &["`big`"]);
    bad(&["--sae", s(&sae), "--steer", "3"], &["FEATURE=SCALE"]);
    bad(&["--seed", "1"], &["--generate"]);
    bad(
        &["--generate", "2", "--seed", "1", "--temperature", "0"],
        &["--temperature"],
    );
}
