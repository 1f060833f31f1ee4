//! GPT-2-family checkpoints in Hugging Face's layout (issue 13): parity with transformers and TransformerLens on
//! `../shared/fixtures/hf-gpt2/tiny` through `run --dump`, as the directory is and after `convert`; the
//! prefix-less BF16 and sharded layouts and the hub cache's folders, written here from the fixture; and the
//! one-line refusals of broken inputs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use circuitscope::cli::convert::convert;
use circuitscope::model::{Gpt, HookName, Hooks, LoadOptions};
use safetensors::{Dtype, SafeTensors};
use tempfile::TempDir;

use crate::common::{cli, cli_err, max_abs_diff};

const TOL: f32 = 1e-4;
/// Hooks of TransformerLens that have no hook point here (derived values inside a norm, the scores before the
/// softmax, the MLP before its activation, the separate embeddings); those that equal another hook are checked
/// through it in [`hf_directory_matches_golden_through_run_dump`].
const NOT_EXPOSED: [&str; 6] = [
    "hook_scale",
    "attn.hook_attn_scores",
    "mlp.hook_pre",
    "ln_final.hook_normalized",
    "unembed.hook_in",
    "hook_embed",
];

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/hf-gpt2/tiny")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny().join("golden.safetensors"), &Device::Cpu).unwrap()
}

/// The golden token rows, as the comma-separated ids `run --tokens` takes.
fn golden_token_rows(g: &HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    g["tokens"].to_dtype(DType::U32).unwrap().to_vec2().unwrap()
}

/// One golden activation of sequence `seq` as (T, width): TransformerLens's per-head [T, heads, d_head] become
/// the heads side by side, as our hooks hold them.
fn golden_rows(g: &HashMap<String, Tensor>, key: &str, seq: usize) -> Tensor {
    let t = g[key].i(seq).unwrap();
    let (rows, rest) = (t.dims()[0], t.elem_count() / t.dims()[0]);
    t.reshape((rows, rest)).unwrap()
}

/// `run --dump` of each golden sequence on `model`, compared with logits and every TransformerLens hook that
/// has a counterpart here; returns how many hook tensors were compared.
fn check_run_dump(model: &Path, g: &HashMap<String, Tensor>, what: &str) -> usize {
    let dir = TempDir::new().unwrap();
    let weights = candle_core::safetensors::load(tiny().join("model.safetensors"), &Device::Cpu).unwrap();
    let n_layer = 2;
    let mut checked = 0;
    for (seq, row) in golden_token_rows(g).iter().enumerate() {
        let dump = dir.path().join(format!("dump{seq}.safetensors"));
        let ids: Vec<String> = row.iter().map(u32::to_string).collect();
        let out = cli(&[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--tokens",
            &ids.join(","),
            "--hooks",
            ".*",
            "--dump",
            dump.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.ok, "{what}: run failed: {}", out.stderr);
        let ours = candle_core::safetensors::load(&dump, &Device::Cpu).unwrap();
        for key in ["hf.logits", "tl.logits"] {
            let d = max_abs_diff(&ours["logits"], &g[key].i(seq).unwrap());
            assert!(d < TOL, "{what}: seq {seq}: logits differ from {key} by {d}");
        }
        // unembed.hook_out is the logits.
        let d = max_abs_diff(&ours["logits"], &golden_rows(g, "hook.unembed.hook_out", seq));
        assert!(d < TOL, "{what}: unembed.hook_out differs by {d}");
        for hook in HookName::all(n_layer) {
            let tl = format!("hook.{}", hook.transformer_lens(n_layer));
            let got = &ours[&format!("hook.{hook}")];
            let mut want = golden_rows(g, &tl, seq);
            if tl.ends_with("hook_normalized") {
                // TransformerLens records its LayerNorm before the gain and bias (they are folded into the next
                // weights by its default processing); our `act_in` is what the sublayer reads, after them.
                let ln = if tl.contains("ln1") { "ln_1" } else { "ln_2" };
                let layer = hook.layer().unwrap();
                let w = &weights[&format!("transformer.h.{layer}.{ln}.weight")];
                let b = &weights[&format!("transformer.h.{layer}.{ln}.bias")];
                want = want.broadcast_mul(w).unwrap().broadcast_add(b).unwrap();
            }
            let d = max_abs_diff(got, &want);
            assert!(d < TOL, "{what}: seq {seq}: {hook} ({tl}) differs by {d}");
            checked += 1;
        }
        // Hooks TransformerLens names twice: block L's resid_post is block L+1's resid_pre, and the embeddings
        // add up to block 0's resid_pre.
        for l in 0..n_layer - 1 {
            let d = max_abs_diff(
                &ours[&format!("hook.{}.resid_in", l + 1)],
                &golden_rows(g, &format!("hook.blocks.{l}.hook_resid_post"), seq),
            );
            assert!(d < TOL, "{what}: blocks.{l}.hook_resid_post differs by {d}");
            checked += 1;
        }
        let embed = (golden_rows(g, "hook.hook_embed", seq) + golden_rows(g, "hook.hook_pos_embed", seq)).unwrap();
        let d = max_abs_diff(&ours["hook.0.resid_in"], &embed);
        assert!(d < TOL, "{what}: hook_embed + hook_pos_embed differs by {d}");
    }
    checked
}

#[test]
fn hf_directory_matches_golden_through_run_dump() {
    let g = golden();
    let checked = check_run_dump(&tiny(), &g, "hf directory");
    // Every golden hook is either compared or listed as having no counterpart.
    let per_seq = g
        .keys()
        .filter_map(|k| k.strip_prefix("hook."))
        .filter(|k| !NOT_EXPOSED.iter().any(|n| k.ends_with(n)))
        .filter(|k| !k.ends_with("hook_pattern") && !k.ends_with("hook_pos_embed") && *k != "unembed.hook_out")
        .count();
    assert_eq!(
        checked,
        2 * per_seq,
        "compared {checked} hook tensors, expected {}",
        2 * per_seq
    );
}

#[test]
fn hf_attention_patterns_match_golden_on_both_paths() {
    let g = golden();
    let (model, warnings) = Gpt::load(&tiny(), LoadOptions::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    for differentiable in [false, true] {
        let mut hooks = Hooks::none();
        hooks.set_record_patterns(".*").unwrap();
        hooks.differentiable = differentiable;
        let logits = model.forward(&tokens, &mut hooks).unwrap();
        let d = max_abs_diff(&logits, &g["hf.logits"]);
        assert!(d < TOL, "logits (differentiable: {differentiable}) differ by {d}");
        for l in 0..2 {
            let d = max_abs_diff(
                &hooks.recorded[&format!("{l}.attn.pattern")],
                &g[&format!("hook.blocks.{l}.attn.hook_pattern")],
            );
            assert!(d < TOL, "layer {l} pattern differs by {d}");
        }
    }
}

#[test]
fn converted_hf_model_matches_golden() {
    let g = golden();
    let out = TempDir::new().unwrap();
    let report = convert(&tiny(), out.path(), 0.25, false).unwrap();
    assert!(report.csr_matrices.is_empty(), "a dense GPT-2 stays dense");
    let config = std::fs::read_to_string(out.path().join("config.json")).unwrap();
    assert!(!config.contains("model_type"), "convert writes our config: {config}");
    assert!(config.contains("\"gelu_new\""), "{config}");
    check_run_dump(out.path(), &g, "converted");
}

/// The fixture's tensors by name as (dtype, shape, little-endian bytes).
fn fixture_tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32);
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

struct View {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &View {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn write_st(path: &Path, tensors: &BTreeMap<String, View>) {
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn f32_view(shape: &[usize], values: &[f32]) -> View {
    View {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// A model directory holding the fixture's config and `tensors` as `model.safetensors`.
fn model_dir(tensors: &BTreeMap<String, View>) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).unwrap();
    write_st(&dir.path().join("model.safetensors"), tensors);
    dir
}

fn logits_of(model: &Path) -> Tensor {
    let (model, _) = Gpt::load(model, LoadOptions::default()).unwrap();
    let g = golden();
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    model.forward(&tokens, &mut Hooks::none()).unwrap()
}

#[test]
fn prefixless_bf16_and_f16_files_load_as_their_values() {
    let orig = fixture_tensors();
    for dtype in [Dtype::BF16, Dtype::F16] {
        // The half-precision file, without the `transformer.` prefix (as the hub's `gpt2` upload has it) ...
        let half: BTreeMap<String, View> = orig
            .iter()
            .map(|(name, (shape, values))| {
                let data = values
                    .iter()
                    .flat_map(|&v| match dtype {
                        Dtype::BF16 => half::bf16::from_f32(v).to_le_bytes(),
                        _ => half::f16::from_f32(v).to_le_bytes(),
                    })
                    .collect();
                let name = name.strip_prefix("transformer.").unwrap_or(name).to_string();
                (
                    name,
                    View {
                        dtype,
                        shape: shape.clone(),
                        data,
                    },
                )
            })
            .collect();
        // ... and the same rounded values in F32 under the prefixed names.
        let rounded: BTreeMap<String, View> = orig
            .iter()
            .map(|(name, (shape, values))| {
                let r: Vec<f32> = values
                    .iter()
                    .map(|&v| match dtype {
                        Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
                        _ => half::f16::from_f32(v).to_f32(),
                    })
                    .collect();
                (name.clone(), f32_view(shape, &r))
            })
            .collect();
        let (a, b) = (model_dir(&half), model_dir(&rounded));
        let d = max_abs_diff(&logits_of(a.path()), &logits_of(b.path()));
        assert!(
            d == 0.0,
            "{dtype:?}: prefix-less half file differs from its f32 values by {d}"
        );
        // Rounding the weights moves the logits, but not far: the file is the same model.
        let want = &golden()["hf.logits"];
        let scale = want
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = max_abs_diff(&logits_of(a.path()), want);
        assert!(d > 0.0 && d < 0.05 * scale, "{dtype:?}: {d} of {scale}");
    }
}

/// The fixture split over two shards with an index, in `dir`.
fn write_sharded(dir: &Path) {
    std::fs::copy(tiny().join("config.json"), dir.join("config.json")).unwrap();
    let orig = fixture_tensors();
    let mut shards: [BTreeMap<String, View>; 2] = [BTreeMap::new(), BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (name, (shape, values)) in &orig {
        // Block 1 and the final norm in the second shard, the rest in the first.
        let i = usize::from(name.contains(".h.1.") || name.contains("ln_f"));
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        weight_map.insert(name.clone(), file.into());
        shards[i].insert(name.clone(), f32_view(shape, values));
    }
    for (i, shard) in shards.iter().enumerate() {
        write_st(&dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)), shard);
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dir = TempDir::new().unwrap();
    write_sharded(dir.path());
    let d = max_abs_diff(&logits_of(dir.path()), &logits_of(&tiny()));
    assert!(d == 0.0, "sharded differs by {d}");
}

/// A hub cache entry `models--gpt2` with the fixture as snapshot `rev`, files linked into `blobs/`.
#[cfg(unix)]
fn write_hub_cache(root: &Path, revs: &[&str], main: Option<&str>) -> PathBuf {
    let entry = root.join("models--gpt2");
    std::fs::create_dir_all(entry.join("blobs")).unwrap();
    for rev in revs {
        let snap = entry.join("snapshots").join(rev);
        std::fs::create_dir_all(&snap).unwrap();
        for file in ["config.json", "model.safetensors"] {
            let blob = entry.join("blobs").join(format!("{rev}-{file}"));
            std::fs::copy(tiny().join(file), &blob).unwrap();
            std::os::unix::fs::symlink(format!("../../blobs/{rev}-{file}"), snap.join(file)).unwrap();
        }
    }
    if let Some(main) = main {
        std::fs::create_dir_all(entry.join("refs")).unwrap();
        std::fs::write(entry.join("refs/main"), main).unwrap();
    }
    entry
}

#[cfg(unix)]
#[test]
fn hub_cache_folder_opens_the_main_snapshot() {
    let root = TempDir::new().unwrap();
    let entry = write_hub_cache(root.path(), &["aaa111", "bbb222"], Some("bbb222"));
    let d = max_abs_diff(&logits_of(&entry), &golden()["hf.logits"]);
    assert!(d < TOL, "{d}");
    // Two snapshots and no refs/main: which one is meant is not guessed.
    std::fs::remove_file(entry.join("refs/main")).unwrap();
    cli_err(
        &["run", "--model", entry.to_str().unwrap(), "--tokens", "1,2"],
        &["2 snapshots", "refs/main"],
    );
    // One snapshot and no refs/main: that one.
    let root = TempDir::new().unwrap();
    let entry = write_hub_cache(root.path(), &["ccc333"], None);
    let out = cli(&["run", "--model", entry.to_str().unwrap(), "--tokens", "1,2", "--json"]);
    assert!(out.ok, "{}", out.stderr);
}

fn run_err(model: &Path, needles: &[&str]) -> String {
    cli_err(
        &["run", "--model", model.to_str().unwrap(), "--tokens", "1,2,3"],
        needles,
    )
}

#[test]
fn another_model_type_is_refused_naming_the_field() {
    let dir = TempDir::new().unwrap();
    std::fs::copy(tiny().join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(tiny().join("config.json")).unwrap();
    for (from, to, needle) in [
        ("\"gpt2\"", "\"llama\"", "model_type"),
        ("\"gelu_new\"", "\"silu\"", "activation_function"),
        ("1e-05", "1e-06", "layer_norm_epsilon"),
    ] {
        std::fs::write(dir.path().join("config.json"), config.replace(from, to)).unwrap();
        run_err(dir.path(), &[needle, "config.json"]);
    }
}

#[test]
fn broken_shards_are_refused_in_one_line() {
    // A shard the index names is missing.
    let dir = TempDir::new().unwrap();
    write_sharded(dir.path());
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    run_err(dir.path(), &["model-00002-of-00002.safetensors", "index.json"]);
    // The index names a tensor its shard does not hold.
    let dir = TempDir::new().unwrap();
    write_sharded(dir.path());
    let path = dir.path().join("model.safetensors.index.json");
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    index["weight_map"]["transformer.h.9.attn.c_attn.weight"] = "model-00001-of-00002.safetensors".into();
    std::fs::write(&path, index.to_string()).unwrap();
    run_err(dir.path(), &["transformer.h.9.attn.c_attn.weight", "does not hold it"]);
    // The index names a file outside the folder.
    index["weight_map"]["transformer.h.9.attn.c_attn.weight"] = "../elsewhere.safetensors".into();
    std::fs::write(&path, index.to_string()).unwrap();
    run_err(dir.path(), &["../elsewhere.safetensors", "not a file beside the index"]);
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named_as_stored() {
    let mut tensors: BTreeMap<String, View> = fixture_tensors()
        .iter()
        .map(|(name, (shape, values))| (name.clone(), f32_view(shape, values)))
        .collect();
    // Stored [out, in] instead of Conv1D's [in, out].
    let name = "transformer.h.1.mlp.c_fc.weight";
    tensors.get_mut(name).unwrap().shape = vec![256, 64];
    let dir = model_dir(&tensors);
    run_err(dir.path(), &[name, "[256, 64]", "[64, 256]"]);
    // A missing tensor is named too.
    tensors.get_mut(name).unwrap().shape = vec![64, 256];
    tensors.remove("transformer.ln_f.bias");
    let dir = model_dir(&tensors);
    run_err(dir.path(), &["transformer.ln_f.bias", "missing"]);
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_in_a_cache_folder_is_refused_in_one_line() {
    let root = TempDir::new().unwrap();
    let entry = write_hub_cache(root.path(), &["abc"], Some("abc"));
    let snap = entry.join("snapshots/abc");
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    std::os::unix::fs::symlink("loop-b", snap.join("model.safetensors")).unwrap();
    std::os::unix::fs::symlink("model.safetensors", snap.join("loop-b")).unwrap();
    run_err(&entry, &["model.safetensors"]);
    // The snapshot folder itself a loop.
    let root = TempDir::new().unwrap();
    let entry = write_hub_cache(root.path(), &["abc"], Some("abc"));
    std::fs::remove_dir_all(entry.join("snapshots/abc")).unwrap();
    std::os::unix::fs::symlink("abc", entry.join("snapshots/abc")).unwrap();
    run_err(&entry, &["snapshots/abc"]);
}

fn run_json(model: &Path, extra: &[&str]) -> serde_json::Value {
    let m = model.to_str().unwrap();
    let mut args = vec!["run", "--model", m, "--tokens", "5,17,2,99", "--json"];
    args.extend_from_slice(extra);
    let out = cli(&args);
    assert!(out.ok, "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn transformer_lens_names_work_in_channels_hooks_and_interventions() {
    let m = tiny();
    // [h:c] at q/k/v/z in TransformerLens's spelling is head h, channel c; in ours it stays a range.
    let tl = run_json(&m, &["--channels", "blocks.1.attn.hook_q[3:15]", "--per-token"]);
    let ours = run_json(&m, &["--channels", "1.attn.q[63]", "--per-token"]);
    assert_eq!(tl["channels"][0]["id"], "1.attn.q[63]");
    assert_eq!(tl["channels"][0]["values"], ours["channels"][0]["values"]);
    let range = run_json(&m, &["--channels", "1.attn.q[3:15]"]);
    assert_eq!(range["channels"].as_array().unwrap().len(), 12);
    // Other hooks index plainly; resid_post is the next block's resid_in.
    let post = run_json(&m, &["--channels", "blocks.0.hook_resid_post[7]"]);
    assert_eq!(post["channels"][0]["id"], "1.resid_in[7]");
    let last = run_json(&m, &["--channels", "blocks.1.hook_resid_post[7]"]);
    assert_eq!(last["channels"][0]["id"], "final_resid[7]");
    // --hooks matches either spelling.
    let hooks = run_json(
        &m,
        &["--hooks", r"blocks\.1\.attn\.hook_[qz]|blocks\.0\.mlp\.hook_post"],
    );
    let names: Vec<&str> = hooks["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0.mlp.post_act", "1.attn.q", "1.attn.y"]);
    // An intervention named either way is the same intervention.
    let a = run_json(&m, &["--intervene", "blocks.0.attn.hook_v[2:5]=3.5", "--top", "256"]);
    let b = run_json(&m, &["--intervene", "0.attn.v[37]=3.5", "--top", "256"]);
    let plain = run_json(&m, &["--top", "256"]);
    assert_eq!(a["top"], b["top"]);
    assert_ne!(a["top"], plain["top"], "the intervention changes the output");
    // Out of range, in TransformerLens's terms.
    let m = m.to_str().unwrap();
    cli_err(
        &[
            "run",
            "--model",
            m,
            "--tokens",
            "1",
            "--channels",
            "blocks.0.attn.hook_z[4:0]",
        ],
        &["head 4 channel 0", "4 heads of 16"],
    );
    cli_err(
        &[
            "run",
            "--model",
            m,
            "--tokens",
            "1",
            "--channels",
            "blocks.2.hook_resid_post[0]",
        ],
        &["unknown hook", "blocks.2.hook_resid_post"],
    );
}

#[test]
fn synth_writes_a_loadable_hugging_face_gpt2() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        let out = cli(&[
            "synth",
            "--shape",
            "gpt2-tiny",
            "--seed",
            "3",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.ok, "{}", out.stderr);
    }
    let config = std::fs::read_to_string(a.join("config.json")).unwrap();
    assert!(config.contains("\"model_type\": \"gpt2\""), "{config}");
    let bytes = std::fs::read(a.join("model.safetensors")).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(b.join("model.safetensors")).unwrap(),
        "same seed, same file"
    );
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // Hugging Face's layout: Conv1D [in, out], tied (no lm_head), and the metadata transformers requires.
    assert_eq!(st.tensor("transformer.h.0.mlp.c_fc.weight").unwrap().shape(), [64, 256]);
    assert!(st.tensor("lm_head.weight").is_err());
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let v = run_json(&a, &[]);
    assert_eq!(v["top"].as_array().unwrap().len(), 10);
    let bench = ok_json(&[
        "bench",
        "forward",
        "--model",
        a.to_str().unwrap(),
        "--tokens",
        "16",
        "--iters",
        "1",
        "--json",
    ]);
    for path in ["dense", "sparse"] {
        assert!(bench[path]["tokens_per_s"].as_f64().unwrap() > 0.0, "{bench}");
        assert_eq!(bench[path]["matrices"], 9, "{bench}");
    }
    // A density makes no sense for a dense shape, and a sparse shape needs one.
    let c = tmp.path().join("c");
    cli_err(
        &["synth", "--shape", "gpt2-tiny", "--density", "1/4", c.to_str().unwrap()],
        &["--density", "gpt2-tiny"],
    );
    cli_err(
        &["synth", "--shape", "tiny", c.to_str().unwrap()],
        &["--density is required"],
    );
}

/// The fixture with a byte-level tokenizer for its 256 ids (the 256 bytes, no merges, no end-of-text token:
/// its id would lie outside the vocabulary), in a temp folder.
/// Returns the temp folder and the model folder inside it, named `hf-gpt2-tiny` (the workbench shows the name).
fn fixture_with_tokenizer() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("hf-gpt2-tiny");
    std::fs::create_dir(&dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny().join(file), dir.join(file)).unwrap();
    }
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2");
    std::fs::copy(ours.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    (tmp, dir)
}

fn task_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/copy.jsonl")
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(out.ok, "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout))
}

#[test]
fn scan_eval_prune_check_and_the_workbench_run_on_the_fixture() {
    let (_tmp, dir) = fixture_with_tokenizer();
    let m = dir.to_str().unwrap();
    let task = task_file();
    let task = task.to_str().unwrap();
    let scan = ok_json(&["scan", "--model", m, "--tokens", "1024", "--json"]);
    assert_eq!(scan["tokens"], 1024);
    assert!(dir.join("scan").is_dir());
    // scan show reads a node spelled either way: head 1's channel 3 of q.
    let shape =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let d_head = shape["n_embd"].as_u64().unwrap() / shape["n_head"].as_u64().unwrap();
    let ours = ok_json(&[
        "scan",
        "show",
        "--model",
        m,
        &format!("0.attn.q[{}]", d_head + 3),
        "--json",
    ]);
    let theirs = ok_json(&["scan", "show", "--model", m, "blocks.0.attn.hook_q[1:3]", "--json"]);
    assert_eq!(ours, theirs);
    // eval: the task file is scored; a built-in task whose targets are several bytes is skipped, with why.
    let eval = ok_json(&[
        "eval",
        "--model",
        m,
        "--tasks",
        &format!("bracket_counting,{task}"),
        "--pairs",
        "16",
        "--wild",
        "none",
        "--corpus",
        "synthetic",
        "--json",
    ]);
    assert_eq!(eval["tasks"]["copy"]["pairs"], 16, "{eval}");
    assert!(eval["tasks"].get("bracket_counting").is_none());
    assert_eq!(eval["skipped"][0]["task"], "bracket_counting");
    assert!(eval["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("tokens with this tokenizer"));
    // prune on the scan's means, then check the circuit on the same task file.
    let circuit = dir.join("copy.json");
    let c = circuit.to_str().unwrap();
    let pruned = ok_json(&[
        "prune",
        "--model",
        m,
        "--task",
        task,
        "--steps",
        "10",
        "--train-pairs",
        "16",
        "--eval-pairs",
        "16",
        "--target-loss",
        "5",
        "-o",
        c,
        "--json",
    ]);
    assert!(pruned["nodes"].as_u64().unwrap() > 0, "{pruned}");
    let check = ok_json(&[
        "circuit", "check", c, "--model", m, "--task", task, "--pairs", "16", "--json",
    ]);
    assert!(check.get("task").is_some(), "{check}");
    // Without --task the file's task name alone does not say where the pairs are.
    cli_err(
        &["circuit", "check", c, "--model", m, "--pairs", "16"],
        &["--task FILE.jsonl"],
    );
    // The workbench opens the pruned GPT-2 circuit with the scan's exemplars.
    use circuitscope::tui::{self, ColorMode, OpenOptions, Theme};
    let opts = OpenOptions {
        model: dir.clone(),
        circuit: Some(circuit.clone()),
        task: "copy".into(),
        session: None,
        sae: None,
    };
    let l = tui::load(&opts, Theme::new(ColorMode::TrueColor)).unwrap_or_else(|e| panic!("open: {e}"));
    let (mut app, mut engine) = (l.app, l.engine);
    app.debounce = std::time::Duration::ZERO;
    app.show_timing = false;
    tui::pump(&mut app, &mut engine);
    for (key, name) in [('1', "map"), ('2', "inspector")] {
        tui::update(&mut app, tui::Msg::ch(key));
        tui::pump(&mut app, &mut engine);
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        t.draw(|f| tui::view(&app, f)).unwrap();
        let text: String = t.backend().buffer().content().iter().map(|c| c.symbol()).collect();
        assert!(!text.trim().is_empty(), "{name} is blank");
        insta::assert_snapshot!(format!("gpt2_{name}_120x40"), t.backend());
    }
}
