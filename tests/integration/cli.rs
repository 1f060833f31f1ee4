//! The binary as a user touches it: `run` (JSON, channels, interventions, context limit, prompts, dumps),
//! `convert`, `synth`, `bench forward` and `tokenize`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use serde_json::Value;
use tempfile::TempDir;

use crate::common::{cli, cli_stdin, Out};

const VARIANTS: [&str; 4] = [
    "rms_sink_topk_bigram",
    "layernorm_tied_relu",
    "cat_pos_emb",
    "dhead_resid_relu",
];
const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tokenizers/tinypython_2k");

fn fixture(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference-gpt")
        .join(variant)
}

fn model() -> String {
    fixture("layernorm_tied_relu").to_str().unwrap().to_string()
}

/// Runs and parses stdout as JSON, failing the test if the command fails.
fn cli_json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(out.ok, "circuitscope {args:?} failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {}", out.stdout))
}

/// Expects a clean failure (non-zero exit, one `error: ` line, no panic) and returns the line.
fn cli_err(args: &[&str]) -> String {
    let out = cli(args);
    assert!(!out.ok, "circuitscope {args:?} succeeded: {}", out.stdout);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: ") && !l.starts_with("bench forward: "))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one error line: {}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{args:?}: {}", out.stderr);
    lines[0].to_string()
}

fn assert_contains(line: &str, needles: &[&str]) {
    for n in needles {
        assert!(line.contains(n), "`{line}` does not mention `{n}`");
    }
}

/// `run --json` with these extra args on the fixture model and tokens 1,2,3.
fn run_json(extra: &[&str]) -> Value {
    let m = model();
    let mut args = vec!["run", "--model", m.as_str(), "--tokens", "1,2,3", "--json"];
    args.extend_from_slice(extra);
    cli_json(&args)
}

/// Every logit at the last token, by id (uses `--top` = vocab size).
fn all_logits(extra: &[&str]) -> Vec<f64> {
    let mut args = vec!["--top", "128"];
    args.extend_from_slice(extra);
    let v = run_json(&args);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 128);
    let mut logits = vec![f64::NAN; 128];
    for e in top {
        logits[e["id"].as_u64().unwrap() as usize] = e["logit"].as_f64().unwrap();
    }
    logits
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The tinypython_2k tokenizer imported into a temp dir, or None (with a note) when the shared files are absent.
fn tokenizer() -> Option<(TempDir, PathBuf)> {
    let dir = Path::new(SHARED);
    let (enc, bpe) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    if !enc.is_file() || !bpe.is_file() {
        eprintln!("note: {SHARED} not found; skipping the tokenizer part of this test");
        return None;
    }
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("tokenizer.json");
    let r = cli(&[
        "tokenizer",
        "import",
        enc.to_str().unwrap(),
        bpe.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(r.ok, "tokenizer import failed: {}", r.stderr);
    Some((tmp, out))
}

// ---------------------------------------------------------------------------------------------------------------
// run

#[test]
fn run_json_has_stable_keys() {
    let v = run_json(&[]);
    for key in [
        "tokens",
        "top",
        "positions",
        "channels",
        "hooks",
        "interventions",
        "dump",
    ] {
        assert!(v.get(key).is_some(), "missing key `{key}` in {v}");
    }
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 3);
    for (i, (t, id)) in tokens.iter().zip([1, 2, 3]).enumerate() {
        assert_eq!(t["position"], i);
        assert_eq!(t["id"], id);
        assert!(t["text"].is_string());
    }
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 10, "default --top is 10");
    let probs: Vec<f64> = top.iter().map(|t| t["prob"].as_f64().unwrap()).collect();
    let logits: Vec<f64> = top.iter().map(|t| t["logit"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "probs not sorted: {probs:?}");
    assert!(logits.windows(2).all(|w| w[0] >= w[1]), "logits not sorted: {logits:?}");
    assert!(probs.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let sum: f64 = probs.iter().sum();
    assert!(sum <= 1.0 + 1e-5, "top probs sum to {sum}");
    for t in top {
        assert!(t["id"].as_u64().unwrap() < 128);
        assert!(t["token"].is_string());
    }
    assert_eq!(v["positions"], serde_json::json!([2]));
    assert_eq!(v["channels"], serde_json::json!([]));
    assert_eq!(v["hooks"], serde_json::json!([]));
    assert_eq!(v["interventions"], serde_json::json!([]));
    assert_eq!(v["dump"], Value::Null);

    // The whole distribution sums to 1.
    let v = run_json(&["--top", "1000"]);
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 128);
    let sum: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "all probs sum to {sum}");
}

#[test]
fn run_text_output() {
    let m = model();
    let out = cli(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1,2,3",
        "--channels",
        "final_resid[0]",
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("next token"), "{}", out.stdout);
    assert!(out.stdout.contains("final_resid[0]"), "{}", out.stdout);
}

#[test]
fn run_sparse_and_dense_agree() {
    let a = all_logits(&[]);
    let b = all_logits(&["--dense"]);
    assert!(
        max_diff(&a, &b) < 1e-4,
        "sparse and dense differ by {}",
        max_diff(&a, &b)
    );
}

#[test]
fn run_channels() {
    let v = run_json(&["--channels", "0.attn.q[3],final_resid[0:2]"]);
    let ch = v["channels"].as_array().unwrap();
    let ids: Vec<&str> = ch.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0.attn.q[3]", "final_resid[0]", "final_resid[1]"]);
    assert_eq!(v["positions"], serde_json::json!([2]));
    for c in ch {
        assert_eq!(c["values"].as_array().unwrap().len(), 1);
    }
    let last: Vec<f64> = ch.iter().map(|c| c["values"][0].as_f64().unwrap()).collect();

    let v = run_json(&["--channels", "0.attn.q[3],final_resid[0:2]", "--per-token"]);
    assert_eq!(v["positions"], serde_json::json!([0, 1, 2]));
    let ch = v["channels"].as_array().unwrap();
    assert_eq!(ch.len(), 3);
    for (c, want) in ch.iter().zip(&last) {
        let vals = c["values"].as_array().unwrap();
        assert_eq!(vals.len(), 3);
        assert!(
            (vals[2].as_f64().unwrap() - want).abs() < 1e-6,
            "per-token last value differs"
        );
    }
    // Recording channels does not change the prediction.
    assert_eq!(v["top"], run_json(&[])["top"]);
}

#[test]
fn run_bad_channels() {
    let m = model();
    let base = ["run", "--model", m.as_str(), "--tokens", "1,2,3", "--channels"];
    let err = |spec: &str| {
        let mut a = base.to_vec();
        a.push(spec);
        cli_err(&a)
    };
    assert_contains(&err("0.attn.q[999]"), &["0.attn.q[999]", "out of range", "16 channels"]);
    assert_contains(&err("final_resid[10:20]"), &["final_resid[10:20]", "out of range"]);
    assert_contains(&err("final_resid[3:1]"), &["final_resid[3:1]"]);
    assert_contains(&err("9.attn.q[0]"), &["9.attn.q[0]", "unknown hook", "9.attn.q"]);
    assert_contains(&err("nonsense"), &["nonsense", "HOOK[INDEX]"]);
    assert_contains(&err("final_resid[x]"), &["final_resid[x]", "not a number"]);
    assert_contains(&err("final_resid[-1]"), &["final_resid[-1]"]);
    assert_contains(&err("final_resid[0"), &["final_resid[0"]);
}

#[test]
fn run_hooks_summary() {
    let v = run_json(&["--hooks", "1\\.mlp"]);
    let names: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1.mlp.act_in", "1.mlp.post_act", "1.mlp.resid_delta"]);
    let h = &v["hooks"][1];
    assert_eq!(h["width"], 64);
    assert!(h["nonzero"].as_u64().unwrap() <= 64);
    let m = model();
    let line = cli_err(&["run", "--model", &m, "--tokens", "1", "--hooks", "(unclosed"]);
    assert_contains(&line, &["--hooks `(unclosed`", "invalid regex", "unclosed group"]);
}

#[test]
fn run_interventions() {
    let base = all_logits(&[]);
    let zeroed = all_logits(&["--intervene", "final_resid[0]=0"]);
    assert!(
        max_diff(&base, &zeroed) > 1e-6,
        "setting final_resid[0]=0 changed nothing"
    );
    // *=0 is the same as =0; *=1 changes nothing.
    let scaled0 = all_logits(&["--intervene", "final_resid[0]*=0"]);
    assert!(max_diff(&zeroed, &scaled0) < 1e-6);
    let scaled1 = all_logits(&["--intervene", "final_resid[0]*=1"]);
    assert!(max_diff(&base, &scaled1) < 1e-6);
    let scaled3 = all_logits(&["--intervene", "final_resid[0]*=3"]);
    assert!(max_diff(&base, &scaled3) > 1e-6);

    // A set at the last position only; at position 0 only, the last token's logits can still change via attention,
    // but a set at the last position must equal a set at position 2 (of 3).
    let at_last = all_logits(&["--intervene", "1.mlp.post_act[7]@-1=2.5"]);
    let at_2 = all_logits(&["--intervene", "1.mlp.post_act[7]@2=2.5"]);
    assert!(max_diff(&at_last, &at_2) < 1e-6);
    let everywhere = all_logits(&["--intervene", "1.mlp.post_act[7]=2.5"]);
    assert!(
        max_diff(&at_last, &everywhere) < 1e-6,
        "the last layer's MLP only affects its own position"
    );

    // Several interventions; the JSON lists them.
    let v = run_json(&["--intervene", "final_resid[0]=0", "1.mlp.post_act[7]@-1*=2"]);
    assert_eq!(
        v["interventions"],
        serde_json::json!(["final_resid[0]=0", "1.mlp.post_act[7]@-1*=2"])
    );
    // The channel readout shows the intervened value.
    let v = run_json(&[
        "--intervene",
        "final_resid[1]=4.5",
        "--channels",
        "final_resid[1]",
        "--per-token",
    ]);
    assert_eq!(v["channels"][0]["values"], serde_json::json!([4.5, 4.5, 4.5]));
    let v = run_json(&[
        "--intervene",
        "final_resid[1]@0=4.5",
        "--channels",
        "final_resid[1]",
        "--per-token",
    ]);
    assert_eq!(v["channels"][0]["values"][0], 4.5);
    assert_ne!(v["channels"][0]["values"][2], 4.5);
}

#[test]
fn run_bad_interventions() {
    let m = model();
    let err = |spec: &str| cli_err(&["run", "--model", &m, "--tokens", "1,2,3", "--intervene", spec]);
    assert_contains(&err("final_resid[0]"), &["final_resid[0]", "HOOK[i]=VALUE"]);
    assert_contains(&err("final_resid[0]=abc"), &["final_resid[0]=abc", "not a number"]);
    assert_contains(&err("final_resid[0]*=abc"), &["final_resid[0]*=abc", "not a number"]);
    assert_contains(&err("final_resid[0]@x=1"), &["final_resid[0]@x=1", "position"]);
    assert_contains(&err("final_resid[0]@7=1"), &["position 7", "out of range", "3 tokens"]);
    assert_contains(&err("final_resid[0]@-4=1"), &["position -4", "out of range"]);
    assert_contains(&err("final_resid[0:2]=1"), &["final_resid[0:2]=1", "one channel"]);
    assert_contains(&err("final_resid[99]=1"), &["final_resid[99]=1", "out of range"]);
    assert_contains(&err("bogus[0]=1"), &["bogus[0]=1", "unknown hook"]);
    assert_contains(&err("=1"), &["=1"]);
}

#[test]
fn run_context_limit_and_truncate() {
    let m = model();
    let ids: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let all = ids.join(",");
    let line = cli_err(&["run", "--model", &m, "--tokens", &all]);
    assert_contains(&line, &["40 tokens", "32", "--truncate"]);

    let v = cli_json(&["run", "--model", &m, "--tokens", &all, "--truncate", "--json"]);
    let got: Vec<u64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (8..40).collect::<Vec<u64>>());
    let last32 = ids[8..].join(",");
    let w = cli_json(&["run", "--model", &m, "--tokens", &last32, "--json"]);
    assert_eq!(v["top"], w["top"], "--truncate must run on the last 32 tokens");

    // Exactly block_size is fine without --truncate.
    cli_json(&["run", "--model", &m, "--tokens", &last32, "--json"]);
}

#[test]
fn run_token_ids_checked() {
    let m = model();
    let line = cli_err(&["run", "--model", &m, "--tokens", "1,128,3"]);
    assert_contains(&line, &["128", "position 1", "vocabulary", "128"]);
    // A clap usage error: its own format (a hint line follows), but the first line says what is wrong.
    let out = cli(&["run", "--model", &m, "--tokens", "1,x"]);
    assert!(!out.ok);
    assert!(
        out.stderr.starts_with("error: invalid value 'x' for '--tokens"),
        "{}",
        out.stderr
    );
    let line = cli_err(&["run", "--model", &m]);
    assert_contains(&line, &["--prompt", "--tokens"]);
}

#[test]
fn run_prompt_needs_a_tokenizer() {
    let m = model();
    let line = cli_err(&["run", "--model", &m, "--prompt", "!!"]);
    assert_contains(&line, &["tokenizer", "--tokenizer", "--tokens"]);

    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nope.json");
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--prompt",
        "!!",
        "--tokenizer",
        missing.to_str().unwrap(),
    ]);
    assert_contains(&line, &["nope.json"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1",
        "--tokenizer",
        missing.to_str().unwrap(),
    ]);
    assert_contains(&line, &["nope.json"]);
}

#[test]
fn run_prompt_with_tokenizer() {
    let Some((_tmp, tok)) = tokenizer() else { return };
    let m = model();
    let t = tok.to_str().unwrap();
    let ids = cli_json(&["tokenize", "--tokenizer", t, "--text", "!!", "--json"]);
    let ids: Vec<u64> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert!(!ids.is_empty());
    if ids.iter().all(|&i| i < 128) {
        let v = cli_json(&["run", "--model", &m, "--prompt", "!!", "--tokenizer", t, "--json"]);
        let got: Vec<u64> = v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, ids);
        assert_eq!(v["tokens"][0]["text"], "!");
        let ids_arg: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let w = cli_json(&["run", "--model", &m, "--tokens", &ids_arg.join(","), "--json"]);
        assert_eq!(v["top"].as_array().unwrap().len(), w["top"].as_array().unwrap().len());
        for (a, b) in v["top"].as_array().unwrap().iter().zip(w["top"].as_array().unwrap()) {
            assert_eq!(a["id"], b["id"]);
        }
    }
    // A prompt whose tokens lie outside the 128-token fixture vocabulary.
    let text = "def main():\n    return";
    let ids = cli_json(&["tokenize", "--tokenizer", t, "--text", text, "--json"]);
    let ids: Vec<u64> = ids["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    let (pos, id) = ids.iter().enumerate().find(|(_, &i)| i >= 128).expect("some id >= 128");
    let line = cli_err(&["run", "--model", &m, "--prompt", text, "--tokenizer", t]);
    assert_contains(
        &line,
        &[
            &format!("token id {id}"),
            &format!("position {pos}"),
            "vocabulary (size 128)",
        ],
    );
}

#[test]
fn run_dump_matches_golden() {
    for variant in VARIANTS {
        let dir = fixture(variant);
        let golden = candle_core::safetensors::load(dir.join("golden.safetensors"), &Device::Cpu).unwrap();
        let tokens = golden["tokens"]
            .to_dtype(DType::U32)
            .unwrap()
            .i(0)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        let ids: Vec<String> = tokens.iter().map(|i| i.to_string()).collect();
        let tmp = TempDir::new().unwrap();
        let out = tmp.path().join("out.safetensors");
        let v = cli_json(&[
            "run",
            "--model",
            dir.to_str().unwrap(),
            "--tokens",
            &ids.join(","),
            "--dump",
            out.to_str().unwrap(),
            "--hooks",
            ".*",
            "--json",
        ]);
        assert_eq!(v["dump"], out.to_str().unwrap());
        let dump = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        let t = tokens.len();
        let logits = &dump["logits"];
        let want = golden["logits"].i(0).unwrap();
        assert_eq!(logits.dims(), want.dims(), "{variant}: logits shape");
        assert_eq!(logits.dims()[0], t);
        let d = max_abs(logits, &want);
        assert!(d < 1e-4, "{variant}: dumped logits differ from golden by {d}");

        // One hook.<name> per hook point, (T, W), equal to the golden's where it has one.
        let hooks = v["hooks"].as_array().unwrap();
        assert!(!hooks.is_empty());
        assert_eq!(
            dump.len(),
            hooks.len() + 1,
            "{variant}: {:?}",
            dump.keys().collect::<Vec<_>>()
        );
        for h in hooks {
            let name = h["name"].as_str().unwrap();
            let got = dump
                .get(&format!("hook.{name}"))
                .unwrap_or_else(|| panic!("{variant}: hook.{name} not in the dump"));
            assert_eq!(
                got.dims(),
                [t, h["width"].as_u64().unwrap() as usize],
                "{variant}: hook.{name}"
            );
            if let Some(g) = golden.get(&format!("hook.{name}")) {
                let d = max_abs(got, &g.i(0).unwrap());
                assert!(d < 1e-4, "{variant}: hook.{name} differs from golden by {d}");
            }
        }
    }
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn run_dump_to_bad_path() {
    let m = model();
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("no-such-dir").join("out.safetensors");
    let line = cli_err(&["run", "--model", &m, "--tokens", "1", "--dump", out.to_str().unwrap()]);
    assert_contains(&line, &["out.safetensors"]);
}

// ---------------------------------------------------------------------------------------------------------------
// convert

#[test]
fn convert_refuses_to_overwrite() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("conv");
    let input = fixture("rms_sink_topk_bigram");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let v = cli_json(&["convert", i, o, "--json"]);
    for key in ["out_dir", "csr_matrices", "dense_tensors", "warnings"] {
        assert!(v.get(key).is_some(), "missing `{key}` in {v}");
    }
    assert!(v["dense_tensors"].as_u64().unwrap() > 0);
    let weights = out.join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();

    std::fs::write(out.join("config.json"), "user's own config").unwrap();
    let line = cli_err(&["convert", i, o]);
    assert_contains(&line, &["config.json", "exists", "--force"]);
    assert_eq!(
        std::fs::read_to_string(out.join("config.json")).unwrap(),
        "user's own config"
    );
    assert_eq!(std::fs::read(&weights).unwrap(), before);

    let v = cli_json(&["convert", i, o, "--force", "--json"]);
    assert!(v["csr_matrices"].is_array());
    assert!(std::fs::read_to_string(out.join("config.json"))
        .unwrap()
        .contains("format_version"));
    // The converted model runs and predicts like the original.
    let a = cli_json(&["run", "--model", o, "--tokens", "1,2,3", "--json"]);
    let b = cli_json(&["run", "--model", i, "--tokens", "1,2,3", "--json"]);
    let ids = |v: &Value| -> Vec<Value> { v["top"].as_array().unwrap().iter().map(|t| t["id"].clone()).collect() };
    assert_eq!(ids(&a), ids(&b));

    // Bad --sparse-below values are refused by the parser.
    let out = cli(&["convert", i, o, "--force", "--sparse-below", "2"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("(0, 1]"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------------------------
// synth

fn synth(dir: &Path, seed: &str) -> Out {
    cli(&[
        "synth",
        "--shape",
        "tiny",
        "--density",
        "1/8",
        "--seed",
        seed,
        dir.to_str().unwrap(),
    ])
}

#[test]
fn synth_is_deterministic_and_runs() {
    let tmp = TempDir::new().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    for (d, seed) in [(&a, "3"), (&b, "3"), (&c, "4")] {
        let out = synth(d, seed);
        assert!(out.ok, "{}", out.stderr);
    }
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(read(&a) == read(&b), "same seed, different bytes");
    assert!(read(&a) != read(&c), "different seeds, same bytes");

    let v = cli_json(&[
        "run",
        "--model",
        a.to_str().unwrap(),
        "--tokens",
        "5,17,2,2047",
        "--json",
    ]);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 4);
    assert!(v["top"][0]["id"].as_u64().unwrap() < 2048);

    // Refuses to overwrite, and leaves the model as it was.
    let before = read(&a);
    let out = synth(&a, "5");
    assert!(!out.ok);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.lines().count() == 1,
        "{}",
        out.stderr
    );
    assert!(read(&a) == before);
    let out = cli(&[
        "synth",
        "--shape",
        "tiny",
        "--density",
        "1/8",
        "--seed",
        "5",
        "--force",
        a.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);
    assert!(read(&a) != before);
}

#[test]
fn synth_bad_density() {
    let tmp = TempDir::new().unwrap();
    for bad in ["0", "2", "1/0", "x", "-1/8"] {
        let out = cli(&[
            "synth",
            "--shape",
            "tiny",
            "--density",
            bad,
            tmp.path().join("m").to_str().unwrap(),
        ]);
        assert!(!out.ok, "density {bad} accepted");
        assert!(out.stderr.contains("density"), "{}", out.stderr);
    }
    assert!(!tmp.path().join("m").exists());
}

#[test]
fn bench_forward_json() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("tiny");
    assert!(synth(&dir, "1").ok);
    let d = dir.to_str().unwrap();
    let v = cli_json(&[
        "bench", "forward", "--model", d, "--tokens", "16", "--iters", "1", "--json",
    ]);
    for path in ["sparse", "dense"] {
        let r = &v[path];
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(r["peak_rss_mb"].is_number() || r["peak_rss_mb"].is_null(), "{v}");
        if cfg!(target_os = "linux") {
            assert!(r["peak_rss_mb"].as_f64().unwrap() > 0.0);
        }
    }
    let line = cli_err(&["bench", "forward", "--model", d, "--tokens", "300", "--iters", "1"]);
    assert_contains(&line, &["300", "256"]);
    let line = cli_err(&["bench", "forward", "--model", d, "--tokens", "0", "--iters", "1"]);
    assert_contains(&line, &["--tokens"]);
}

// ---------------------------------------------------------------------------------------------------------------
// tokenize

#[test]
fn tokenize_json_from_stdin() {
    let Some((_tmp, tok)) = tokenizer() else { return };
    let text = "def f(x):\n    return x + 1\n";
    let out = cli_stdin(
        &["tokenize", "--tokenizer", tok.to_str().unwrap(), "--json"],
        Some(text),
    );
    assert!(out.ok, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids = v["ids"].as_array().unwrap();
    let tokens = v["tokens"].as_array().unwrap();
    assert!(!ids.is_empty());
    assert_eq!(ids.len(), tokens.len());
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(joined, text);

    // The same through --text.
    let w = cli_json(&[
        "tokenize",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--text",
        text,
        "--json",
    ]);
    assert_eq!(v, w);

    // Refuses to overwrite on import.
    let dir = Path::new(SHARED);
    let line = cli_err(&[
        "tokenizer",
        "import",
        dir.join("encoder.json").to_str().unwrap(),
        dir.join("vocab.bpe").to_str().unwrap(),
        "-o",
        tok.to_str().unwrap(),
    ]);
    assert_contains(&line, &["--force"]);
}

#[test]
fn tokenize_missing_tokenizer() {
    let tmp = TempDir::new().unwrap();
    let p = tmp.path().join("missing.json");
    let line = cli_err(&["tokenize", "--tokenizer", p.to_str().unwrap(), "--text", "hi"]);
    assert_contains(&line, &["missing.json"]);
    std::fs::write(&p, "not json").unwrap();
    let line = cli_err(&["tokenize", "--tokenizer", p.to_str().unwrap(), "--text", "hi"]);
    assert_contains(&line, &["missing.json"]);
}

fn bundled_model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models/tinypython-sparse")
        .to_str()
        .unwrap()
        .to_string()
}

/// The sum of a `logit_diff` JSON object's component values.
fn components_sum(ld: &Value) -> f64 {
    ld["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_f64().unwrap())
        .sum()
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 2e-3 * (1.0 + a.abs().max(b.abs())),
        "{what}: {a} vs {b}"
    );
}

/// On every fixture variant with a plain residual stream (RMSNorm with sinks, AbsTopK and a bigram table;
/// LayerNorm with a tied unembedding; concatenated position embeddings), the rows add up to the logit
/// difference the forward pass printed, less the unembedding bias; with an intervention on the residual stream
/// too. The variant with a ReLU on the residual is refused with one line.
#[test]
fn run_logit_diff_rows_sum_to_the_logit_difference() {
    for variant in ["rms_sink_topk_bigram", "layernorm_tied_relu", "cat_pos_emb"] {
        let m = fixture(variant);
        let m = m.to_str().unwrap();
        for extra in [
            &[][..],
            &["--intervene", "final_resid[0]=3", "0.attn.resid_delta[1]=2"][..],
        ] {
            let mut args = vec!["run", "--model", m, "--tokens", "1,2,3,4", "--top", "128", "--json"];
            args.extend_from_slice(&["--logit-diff", "5", "#9"]);
            args.extend_from_slice(extra);
            let v = cli_json(&args);
            let ld = &v["logit_diff"];
            let logit = |id: u64| {
                v["top"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()["logit"]
                    .as_f64()
                    .unwrap()
            };
            assert_eq!((ld["a"]["id"].as_u64(), ld["b"]["id"].as_u64()), (Some(5), Some(9)));
            let diff = ld["diff"].as_f64().unwrap();
            assert_close(diff, logit(5) - logit(9), &format!("{variant} {extra:?}: diff"));
            let total = components_sum(ld) + ld["unembed_bias"].as_f64().unwrap();
            assert_close(total, diff, &format!("{variant} {extra:?}: rows + unembedding bias"));
            let kinds: Vec<&str> = ld["components"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["kind"].as_str().unwrap())
                .collect();
            assert_eq!(kinds[0], "embedding");
            assert!(kinds.contains(&"attn_head") && kinds.contains(&"mlp"), "{kinds:?}");
            assert_eq!(
                kinds.contains(&"residual_edit"),
                !extra.is_empty(),
                "{variant} {extra:?}: {kinds:?}"
            );
            assert_eq!(kinds.contains(&"norm_bias"), variant == "layernorm_tied_relu");
            assert_eq!(kinds.contains(&"bigram_table"), variant == "rms_sink_topk_bigram");
            assert!(ld["nodes"].is_null());
        }
    }
    let m = fixture("dhead_resid_relu");
    let line = cli_err(&[
        "run",
        "--model",
        m.to_str().unwrap(),
        "--tokens",
        "1,2",
        "--logit-diff",
        "1",
        "2",
    ]);
    assert_contains(&line, &["--logit-diff", "plain residual stream", "residual stream"]);
}

/// `--dla TOKEN` splits the logit itself: on every fixture variant with a plain residual stream the rows sum to
/// the logit the forward pass printed, less that token's unembedding bias; `--dla A,B` is `--logit-diff A B`
/// under its documented name (same object under `dla` and the older `logit_diff` key).
#[test]
fn run_dla_splits_one_logit_or_a_difference() {
    for variant in ["rms_sink_topk_bigram", "layernorm_tied_relu", "cat_pos_emb"] {
        let m = fixture(variant);
        let m = m.to_str().unwrap();
        let base = ["run", "--model", m, "--tokens", "1,2,3,4", "--top", "128", "--json"];
        let v = cli_json(&[&base[..], &["--dla", "#5"]].concat());
        let logit = |v: &Value, id: u64| {
            v["top"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()["logit"]
                .as_f64()
                .unwrap()
        };
        let d = &v["dla"];
        assert_eq!(d, &v["logit_diff"]);
        assert!(d["b"].is_null(), "{variant}: {d}");
        assert_close(
            d["diff"].as_f64().unwrap(),
            logit(&v, 5),
            &format!("{variant}: the logit"),
        );
        let total = components_sum(d) + d["unembed_bias"].as_f64().unwrap();
        assert_close(total, logit(&v, 5), &format!("{variant}: rows + unembedding bias"));
        let pair = cli_json(&[&base[..], &["--dla", "5,#9"]].concat());
        let old = cli_json(&[&base[..], &["--logit-diff", "5", "#9"]].concat());
        assert_eq!(pair["dla"], old["logit_diff"], "{variant}");
        assert_close(
            pair["dla"]["diff"].as_f64().unwrap(),
            logit(&v, 5) - logit(&v, 9),
            &format!("{variant}: the difference"),
        );
    }
    let m = bundled_model();
    let out = cli(&["run", "--model", &m, "--prompt", "x = [[1, 2], [3", "--dla", "]]\n"]);
    assert!(out.ok, "{}", out.stderr);
    for needle in [
        "logit at the last token",
        "0.attn.h0",
        "sum of the rows",
        "less the unembedding bias",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?} in {}", out.stdout);
    }
    let err = |spec: &str| cli_err(&["run", "--model", &m, "--prompt", "x = [", "--dla", spec]);
    assert_contains(&err("#99999"), &["--dla `#99999`", "outside the vocabulary"]);
    assert_contains(
        &err("hello world again"),
        &["--dla `hello world again`", "tokens", "#ID"],
    );
    assert_contains(&err(",x"), &["--dla", "empty token"]);
}

/// Text targets on the bundled model, the circuit's nodes, and the text output; bad targets are one line each.
#[test]
fn run_logit_diff_with_text_targets_and_a_circuit() {
    let m = bundled_model();
    let circuit = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/circuits/tinypython-sparse/bracket_counting.json");
    let prompt = "x = [[1, 2], [3";
    let args = |extra: &[&str]| {
        let mut a = vec![
            "run",
            "--model",
            m.as_str(),
            "--prompt",
            prompt,
            "--logit-diff",
            "]]\n",
            "]\n",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let owned = args(&["--circuit", circuit.to_str().unwrap(), "--json"]);
    let v = cli_json(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    let ld = &v["logit_diff"];
    assert_close(
        components_sum(ld) + ld["unembed_bias"].as_f64().unwrap(),
        ld["diff"].as_f64().unwrap(),
        "bundled model",
    );
    let nodes = ld["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty());
    // Largest first, and only nodes with a direct path.
    let vals: Vec<f64> = nodes.iter().map(|n| n["value"].as_f64().unwrap().abs()).collect();
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{vals:?}");
    for n in nodes {
        let id = n["id"].as_str().unwrap();
        assert!(
            !id.contains("attn.q") && !id.contains("attn.k") && !id.contains("act_in"),
            "{id}"
        );
    }
    // The text form names both tokens, every row and the check sum.
    let owned = args(&[]);
    let out = cli(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.ok, "{}", out.stderr);
    for needle in [
        "logit diff at the last token",
        "0.attn.h0",
        "1.mlp",
        "bigram table",
        "sum of the rows",
    ] {
        assert!(out.stdout.contains(needle), "missing {needle:?} in {}", out.stdout);
    }
    let err = |a: &str, b: &str| cli_err(&["run", "--model", &m, "--prompt", prompt, "--logit-diff", a, b]);
    assert_contains(
        &err("hello world again", "]\n"),
        &["--logit-diff `hello world again`", "tokens", "#ID"],
    );
    assert_contains(&err("#99999", "]\n"), &["#99999", "outside the vocabulary"]);
    assert_contains(&err("#x", "]\n"), &["#x", "not a token id"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--prompt",
        prompt,
        "--circuit",
        circuit.to_str().unwrap(),
    ]);
    assert_contains(&line, &["--dla"]);
}

/// `=mean` sets a channel to the scan's mean (the means pruning and the workbench use), or with --means-task
/// to its mean over the task's prompts; without a scan it says what to do.
#[test]
fn run_mean_interventions() {
    use circuitscope::analysis::ablate::{self, TaskData};
    use circuitscope::analysis::scan::ScanIndex;
    use circuitscope::data::tasks::{self, Split};

    let m = bundled_model();
    let chan = |extra: &[&str]| -> f64 {
        let mut a = vec!["run", "--model", m.as_str(), "--prompt", "x = [[1", "--json"];
        a.extend_from_slice(&["--channels", "1.mlp.post_act[7]", "--per-token"]);
        a.extend_from_slice(extra);
        let v = cli_json(&a);
        let vals = v["channels"][0]["values"].as_array().unwrap().clone();
        let last = vals.last().unwrap().as_f64().unwrap();
        // At every position when no @POS is given.
        if !extra.iter().any(|e| e.contains('@')) && extra.iter().any(|e| e.contains("=mean")) {
            assert!(vals.iter().all(|x| x.as_f64().unwrap() == last), "{vals:?}");
        }
        last
    };
    let scan = ScanIndex::open(&Path::new(&m).join("scan")).unwrap();
    let mean = scan.hook_means("1.mlp.post_act").unwrap()[7] as f64;
    assert_close(chan(&["--intervene", "1.mlp.post_act[7]=mean"]), mean, "scan mean");
    assert_close(
        chan(&["--intervene", "1.mlp.post_act[7]@-1=mean"]),
        mean,
        "scan mean at the last position",
    );
    // The task's means, computed independently by the pruning code over the same prompts.
    let dir = Path::new(&m);
    let tok = circuitscope::tokenize::Tokenizer::load(dir.join("tokenizer.json")).unwrap();
    let (gpt, _) = circuitscope::model::Gpt::load(dir, circuitscope::model::LoadOptions::default()).unwrap();
    let task = tasks::resolve("bracket_counting").unwrap();
    let data = TaskData::new(
        &tok,
        "bracket_counting",
        &tasks::split(task.as_ref(), Split::Train, 64),
        128,
    )
    .unwrap();
    let seqs: Vec<Vec<u32>> = data.pos.iter().chain(&data.neg).cloned().collect();
    let task_mean = ablate::means_over(&gpt, &seqs).unwrap()["1.mlp.post_act"][7] as f64;
    assert!((task_mean - mean).abs() > 1e-6, "the two sources should differ");
    assert_close(
        chan(&[
            "--intervene",
            "1.mlp.post_act[7]=mean",
            "--means-task",
            "bracket_counting",
        ]),
        task_mean,
        "task mean",
    );
    // Refusals.
    let fx = model();
    let line = cli_err(&[
        "run",
        "--model",
        &fx,
        "--tokens",
        "1,2",
        "--intervene",
        "0.mlp.post_act[0]=mean",
    ]);
    assert_contains(&line, &["no scan", "--means-task"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1,2",
        "--intervene",
        "0.mlp.post_act[0]*=mean",
    ]);
    assert_contains(&line, &["*=mean", "not scaled"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1,2",
        "--intervene",
        "0.mlp.post_act[0]=mean",
        "--scan",
        "/nonexistent/scan",
    ]);
    assert_contains(&line, &["/nonexistent/scan", "no scan"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1,2",
        "--intervene",
        "0.resid_mid[0]=mean",
    ]);
    assert_contains(&line, &["no means for hook 0.resid_mid", "--means-task"]);
    let line = cli_err(&[
        "run",
        "--model",
        &m,
        "--tokens",
        "1,2",
        "--intervene",
        "0.mlp.post_act[0]=mean",
        "--means-task",
        "no_such_task",
    ]);
    assert_contains(&line, &["no_such_task"]);
}
