//! Hostile input (issue 22): every crafted file is built here, in the test, and the binary runs under an
//! address-space limit, so that an attempted giant allocation fails the test instead of the machine. Each case
//! must end in one `error:` line, a non-zero exit that is not an abort (134) or a segfault (139), and no panic.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use circuitscope::cli::convert::convert;
use circuitscope::model::torch_pickle::{unpickle, PickleError};
use tempfile::TempDir;

/// The address space the binary may use: far above what any case needs honestly, far below the gigabytes a
/// believed claim would take.
const ADDRESS_SPACE: u64 = 1 << 30;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-gpt/layernorm_tied_relu")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` (and `stdin`), under [`ADDRESS_SPACE`].
fn run_limited(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_circuitscope"));
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RAYON_NUM_THREADS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("starting circuitscope");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        let data = data.to_vec();
        // A writer thread: the child may fail before reading everything, and its output must still drain.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out = child.wait_with_output().expect("waiting for circuitscope");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts a clean refusal and returns the error line.
fn refused(args: &[&str], stdin: Option<&[u8]>, needles: &[&str]) -> String {
    let o = run_limited(args, stdin, &[]);
    let shown = format!("circuitscope {args:?}: exit {:?}, stderr: {}", o.code, o.stderr);
    assert!(o.code.is_some(), "killed by a signal (abort or segfault): {shown}");
    assert!(!matches!(o.code, Some(0 | 134 | 139)), "{shown}");
    assert!(!o.stderr.contains("panicked"), "{shown}");
    assert!(!o.stderr.contains("memory allocation"), "{shown}");
    let lines: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line: {shown}");
    assert!(lines[0].starts_with("error: "), "{shown}");
    for n in needles {
        assert!(lines[0].contains(n), "`{}` does not mention `{n}`", lines[0]);
    }
    lines[0].to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Crafting torch zips.

/// Pickle opcodes of protocol 2, enough to write state dicts and viz payloads by hand.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// LONG1 with 8 bytes: any non-negative i64.
    fn int(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&[0x8a, 8]);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn ints(&mut self, vs: &[u64]) -> &mut Self {
        self.op(b"(");
        for &v in vs {
            self.int(v);
        }
        self.op(b"t")
    }
    /// `torch._utils._rebuild_tensor_v2(persid(('storage', FloatStorage, key, 'cpu', numel)), offset, shape,
    /// stride, False, OrderedDict())`.
    fn tensor(&mut self, key: &str, numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> &mut Self {
        self.op(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        self.op(b"(")
            .str("storage")
            .op(b"ctorch\nFloatStorage\n")
            .str(key)
            .str("cpu")
            .int(numel);
        self.op(b"tQ").int(offset).ints(shape).ints(stride);
        self.op(b"\x89ccollections\nOrderedDict\n)R").op(b"tR")
    }
    fn end(&mut self) -> Vec<u8> {
        self.0.push(b'.');
        std::mem::take(&mut self.0)
    }
}

/// A torch.save-style zip: `archive/data.pkl` and `archive/data/<key>` storages, stored uncompressed.
fn torch_zip(path: &Path, pickle: &[u8], storages: &[(&str, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

/// A state dict (or viz payload) `{name: tensor}` with one float storage of `n` floats.
fn one_tensor_pt(path: &Path, name: &str, n: u64, shape: &[u64], stride: &[u64]) {
    let mut p = Pickle::new();
    p.op(b"}(").str(name).tensor("0", n, 0, shape, stride).op(b"u");
    torch_zip(path, &p.end(), &[("0", vec![0u8; 4 * n as usize])]);
}

/// 200,000 nested TUPLE1: `((((...,),),),)`.
fn nested_tuples() -> Vec<u8> {
    let mut p = Pickle::new();
    p.op(b"K\x01");
    for _ in 0..200_000 {
        p.op(b"\x85");
    }
    p.end()
}

/// A temp dir holding the fixture's config and `final_model.pt` replaced by `pt`.
fn model_with_pt(tmp: &TempDir, write_pt: impl FnOnce(&Path)) -> PathBuf {
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture().join("beeg_config.json"), dir.join("beeg_config.json")).unwrap();
    write_pt(&dir.join("final_model.pt"));
    dir
}

/// The fixture converted to config.json + model.safetensors (dense).
fn converted(tmp: &TempDir) -> PathBuf {
    let dir = tmp.path().join("converted");
    convert(&fixture(), &dir, 0.0, false).expect("convert fixture");
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// Item 1 and 2: torch zips.

/// `circuit import-viz VIZ --model <fixture> -o <tmp>/c.json` must be refused with `expect` in its one line.
fn import_viz_refused(tmp: &TempDir, viz: &Path, expect: &str) {
    refused(
        &[
            "circuit",
            "import-viz",
            s(viz),
            "--model",
            s(&fixture()),
            "-o",
            s(&tmp.path().join("c.json")),
        ],
        None,
        &[expect],
    );
}

#[test]
fn strides_near_2_pow_63_are_refused_not_wrapped() {
    let tmp = TempDir::new().unwrap();
    let big = (1u64 << 63) - 1;
    let viz = tmp.path().join("viz_data.pt");
    one_tensor_pt(&viz, "circuit_data", 4, &[3, 3], &[big, big]);
    import_viz_refused(&tmp, &viz, "viz_data.pt");
    let dir = model_with_pt(&tmp, |p| {
        one_tensor_pt(p, "transformer.wte.weight", 4, &[3, 3], &[big, big])
    });
    refused(
        &["run", "--model", s(&dir), "--tokens", "1,2"],
        None,
        &["final_model.pt", "storage"],
    );
}

#[test]
fn storage_refusals_carry_their_numbers() {
    use circuitscope::model::torch_pickle::{Py, StorageProblem, TorchZip, TorchZipError, ZipProblem};
    let tmp = TempDir::new().unwrap();
    let pt = tmp.path().join("w.pt");
    let cause = |shape: &[u64], stride: &[u64]| {
        one_tensor_pt(&pt, "w", 4, shape, stride);
        let (mut zip, root) = TorchZip::open(&pt).unwrap();
        let Some(Py::Tensor(t)) = root.get("w") else {
            panic!("{root:?}")
        };
        match zip.read(t) {
            Err(TorchZipError::Format {
                problem: ZipProblem::Storage { key, problem },
                ..
            }) => {
                assert_eq!(key, "0");
                *problem
            }
            other => panic!("{:?}", other.err()),
        }
    };
    match cause(&[3, 3], &[3, 1]) {
        StorageProblem::OutOfBounds {
            shape,
            stride,
            offset,
            elements,
        } => assert_eq!((shape, stride, offset, elements), (vec![3, 3], vec![3, 1], 0, 4)),
        other => panic!("{other:?}"),
    }
    match cause(&[3, 3], &[0, 0]) {
        StorageProblem::ClaimsTooMany { numel, elements, .. } => assert_eq!((numel, elements), (9, 4)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deeply_nested_pickles_are_refused_without_overflowing_the_stack() {
    let tmp = TempDir::new().unwrap();
    let deep = nested_tuples();
    let viz = tmp.path().join("viz_data.pt");
    torch_zip(&viz, &deep, &[]);
    import_viz_refused(&tmp, &viz, "nests deeper");
    let dir = model_with_pt(&tmp, |p| torch_zip(p, &deep, &[]));
    refused(&["run", "--model", s(&dir), "--tokens", "1,2"], None, &["nests deeper"]);

    // Nested lists and dicts live in arenas; their depth is caught when resolved.
    let mut p = Pickle::new();
    for _ in 0..200_000 {
        p.op(b"]");
    }
    for _ in 0..199_999 {
        p.op(b"a");
    }
    torch_zip(&viz, &p.end(), &[]);
    import_viz_refused(&tmp, &viz, "nests deeper");
}

#[test]
fn a_million_nested_dicts_stay_within_memory() {
    let tmp = TempDir::new().unwrap();
    let mut p = Pickle::new();
    for _ in 0..1_000_000 {
        p.op(b"}").str("k");
    }
    p.op(b"}");
    for _ in 0..1_000_000 {
        p.op(b"s");
    }
    let viz = tmp.path().join("viz_data.pt");
    torch_zip(&viz, &p.end(), &[]);
    import_viz_refused(&tmp, &viz, "nests deeper");
}

#[test]
fn memo_copies_of_a_large_string_hit_the_budget() {
    // One 1 MB string, then 100,000 BINGETs of it: 100 GB if every copy were believed.
    let mut p = Pickle::new();
    p.op(b"(").str(&"x".repeat(1 << 20)).op(b"q\x00");
    for _ in 0..100_000 {
        p.op(b"h\x00");
    }
    p.op(b"l");
    let e = unpickle(&p.end()).unwrap_err();
    assert!(matches!(e, PickleError::Expands { .. }), "{e}");
}

#[test]
fn a_bigram_table_claiming_2_pow_40_elements_is_refused_before_allocation() {
    let tmp = TempDir::new().unwrap();
    // 118 KB of storage, a (2^20, 2^20) claim.
    let n = 118 * 1024 / 4;
    let dir = model_with_pt(&tmp, |p| {
        one_tensor_pt(p, "bigram_table", n, &[1 << 20, 1 << 20], &[0, 0])
    });
    refused(&["run", "--model", s(&dir), "--tokens", "1,2"], None, &["bigram_table"]);
    let dir = model_with_pt(&tmp, |p| {
        one_tensor_pt(p, "bigram_table", n, &[1 << 20, 1 << 20], &[1 << 20, 1])
    });
    refused(&["run", "--model", s(&dir), "--tokens", "1,2"], None, &["bigram_table"]);
}

#[test]
fn a_stride_0_tensor_of_2_pow_27_elements_is_refused_before_allocation() {
    let tmp = TempDir::new().unwrap();
    let viz = tmp.path().join("viz_data.pt");
    let n = 1u64 << 17;
    let mut p = Pickle::new();
    p.op(b"}(").str("circuit_data").op(b"}(").str("0.mlp.post_act");
    p.tensor("0", n, 0, &[1 << 27], &[0]).op(b"uu");
    torch_zip(&viz, &p.end(), &[("0", vec![0u8; 4 * n as usize])]);
    import_viz_refused(&tmp, &viz, "stride 0");
}

#[test]
fn a_config_with_a_billion_layers_is_refused_before_allocation() {
    let tmp = TempDir::new().unwrap();
    let dir = converted(&tmp);
    let cfg_path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["n_layer"] = 1_000_000_000.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    refused(
        &["run", "--model", s(&dir), "--tokens", "1,2"],
        None,
        &["n_layer 1000000000"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Item 7: silent wrong answers.

/// Rewrites `model.safetensors` in `dir` through `edit` on a name → (dtype, shape, bytes) map.
fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let extra = meta.metadata().clone();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut map: std::collections::BTreeMap<_, _> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = map
        .iter()
        .map(|(n, (d, shape, data))| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, extra).unwrap()).unwrap();
}

#[test]
fn nan_weights_are_refused_unless_allowed_and_then_flagged() {
    let tmp = TempDir::new().unwrap();
    let dir = converted(&tmp);
    edit_weights(&dir, |m| {
        let (_, _, data) = m.get_mut("transformer.ln_f.weight").unwrap();
        data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    refused(
        &["run", "--model", s(&dir), "--tokens", "1,2"],
        None,
        &["transformer.ln_f.weight", "NaN", "--allow-nonfinite"],
    );
    let o = run_limited(
        &["run", "--model", s(&dir), "--tokens", "1,2", "--allow-nonfinite"],
        None,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("warning:") && o.stderr.contains("NaN"),
        "{}",
        o.stderr
    );
}

#[test]
fn tensors_the_config_does_not_use_are_refused_unless_allowed() {
    let tmp = TempDir::new().unwrap();
    let dir = converted(&tmp);
    edit_weights(&dir, |m| {
        let ln = m["transformer.ln_f.weight"].clone();
        m.insert("transformer.h.5.ln_1.weight".into(), ln);
    });
    refused(
        &["run", "--model", s(&dir), "--tokens", "1,2"],
        None,
        &["transformer.h.5.ln_1.weight", "--allow-extra"],
    );
    let o = run_limited(
        &["run", "--model", s(&dir), "--tokens", "1,2", "--allow-extra"],
        None,
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("warning:") && o.stderr.contains("transformer.h.5"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_dense_matrix_beside_its_csr_triple_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("csr");
    convert(&fixture(), &dir, 2.0, false).expect("convert fixture to CSR");
    let name = "transformer.h.0.mlp.c_fc.weight";
    let dense_dir = converted(&tmp);
    let dense = std::fs::read(dense_dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&dense).unwrap();
    let v = st.tensor(name).unwrap();
    let entry = (v.dtype(), v.shape().to_vec(), v.data().to_vec());
    edit_weights(&dir, |m| {
        m.insert(name.into(), entry);
    });
    refused(
        &["run", "--model", s(&dir), "--tokens", "1,2"],
        None,
        &[name, "both dense and as CSR"],
    );
}

#[test]
fn a_tokenizer_with_an_empty_vocabulary_is_refused() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("tokenizer.json");
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {}, "merges": []}
    });
    std::fs::write(&path, tok.to_string()).unwrap();
    refused(
        &["tokenize", "--tokenizer", s(&path), "--text", "hello"],
        None,
        &["empty"],
    );
}

/// Found by the fuzzer: tokenizers 0.23 panics on a JSON syntax error inside the `decoder` field.
#[test]
fn a_tokenizer_cut_inside_its_decoder_is_refused_without_a_panic() {
    let text = std::fs::read_to_string(bundled_tokenizer()).unwrap();
    let cut = text.find("\"decoder\"").unwrap() + 40;
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, format!("{}\n}}", &text[..cut])).unwrap();
    refused(
        &["tokenize", "--tokenizer", s(&path), "--text", "hello"],
        None,
        &["not valid JSON"],
    );
}

#[test]
fn nan_interventions_are_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = converted(&tmp);
    for spec in ["0.mlp.post_act[0]*=nan", "0.mlp.post_act[0]=inf"] {
        refused(
            &["run", "--model", s(&dir), "--tokens", "1,2", "--intervene", spec],
            None,
            &["finite"],
        );
    }
}

#[test]
fn oversized_jsonl_records_are_refused() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("big.jsonl");
    let text = format!("{{\"prompt\": \"{}\", \"target\": \" x\"}}\n", "a".repeat(5 << 20));
    std::fs::write(&path, text).unwrap();
    let e = match circuitscope::data::tasks::resolve(s(&path)) {
        Ok(_) => panic!("a 5 MB prompt was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("big.jsonl") && e.contains("KiB"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Item 6: tokenize streams.

fn bundled_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/tinypython-dense/tokenizer.json")
}

#[test]
fn streamed_tokenization_equals_whole_text() {
    let tok = circuitscope::tokenize::Tokenizer::load(bundled_tokenizer()).unwrap();
    let text =
        "def f(x):\n    return x  +  1\n\n\nclass A:\n  pass\n# ünïcode ok\nprint('hi') <|endoftext|>x\n".repeat(40);
    for special in [false, true] {
        let whole = if special {
            tok.encode_with_specials(&text).unwrap()
        } else {
            tok.encode(&text).unwrap()
        };
        for chunk in [1, 7, 64, 1000] {
            let streamed = circuitscope::cli::tokenize::encode_stream(&tok, text.as_bytes(), special, chunk).unwrap();
            assert_eq!(streamed, whole, "chunk {chunk}, specials {special}");
        }
    }
}

#[test]
fn tokenize_of_a_large_stdin_stays_within_memory() {
    // 8 MB: whole, this took ~1.9 GB (11.7 GB for 50 MB); streamed it must fit the 1 GB address-space limit.
    let text = "def f(x):\n    return x + 1\n".repeat(8 << 20 >> 5);
    let o = run_limited(
        &["tokenize", "--tokenizer", s(&bundled_tokenizer()), "--json"],
        Some(text.as_bytes()),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.starts_with("{\"ids\":[") && o.stdout.ends_with("]}\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// Item 10: sessions.

fn example_session() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/example.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_confidence_outside_0_1_is_refused_by_export_and_merge() {
    let tmp = TempDir::new().unwrap();
    let mut v = example_session();
    let ann = v["annotations"].as_object_mut().expect("annotations");
    let first = ann.values_mut().next().expect("an annotation");
    first["confidence"] = 5.0.into();
    let p = tmp.path().join("s.json");
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    refused(&["export", s(&p)], None, &["confidence 5"]);
    let out = tmp.path().join("m.json");
    refused(
        &["session", "merge", s(&p), s(&p), "-o", s(&out)],
        None,
        &["confidence 5"],
    );
}

#[test]
fn a_newer_session_says_what_happened() {
    let tmp = TempDir::new().unwrap();
    let mut v = example_session();
    v["format_version"] = 99.into();
    let p = tmp.path().join("s.json");
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let line = refused(&["export", s(&p)], None, &["format version 99", "upgrade circuitscope"]);
    assert!(!line.contains("read-only"), "{line}");
}
