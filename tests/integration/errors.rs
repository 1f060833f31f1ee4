//! Bad input, through the library and the binary: every broken model directory, config, safetensors file and
//! PyTorch checkpoint gives one line that says what is wrong and where, a non-zero exit and no panic, and nothing
//! the user had is overwritten.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use circuitscope::cli::convert::convert;
use circuitscope::model::checkpoint::write_safetensors;
use circuitscope::model::config::Config;
use circuitscope::model::{Checkpoint, Gpt, LoadOptions, ModelError, Stored};
use safetensors::Dtype;
use tempfile::TempDir;

const VARIANT: &str = "layernorm_tied_relu";
const TENSOR: &str = "transformer.h.0.mlp.c_fc.weight";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference-gpt")
        .join(VARIANT)
}

fn load_err(path: &Path) -> ModelError {
    match Gpt::load(path, LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not have", path.display()),
        Err(e) => e,
    }
}

use crate::common::cli_parts as cli;

/// Asserts the binary failed cleanly: non-zero exit, no panic, exactly one `error: ` line on stderr (warning lines
/// aside). Returns that line.
fn expect_cli_error(args: &[&str]) -> String {
    let (ok, _, stderr) = cli(args);
    assert!(!ok, "circuitscope {args:?} succeeded; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "circuitscope {args:?} panicked: {stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "circuitscope {args:?} panicked: {stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "circuitscope {args:?}: expected one error line, got: {stderr}"
    );
    assert!(lines[0].starts_with("error: "), "circuitscope {args:?}: {stderr}");
    lines[0].to_string()
}

/// Runs the model at `dir` through the binary and expects a clean failure whose line contains every `needle`.
fn expect_run_error(dir: &Path, needles: &[&str]) -> String {
    let line = expect_cli_error(&["run", "--model", dir.to_str().unwrap(), "--tokens", "1,2,3"]);
    for n in needles {
        assert!(line.contains(n), "`{line}` does not mention `{n}`");
    }
    line
}

fn assert_mentions(e: &ModelError, needles: &[&str]) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
    }
    msg
}

/// A temp dir holding the fixture converted to config.json + model.safetensors. `sparse_below` > 1 stores every
/// matrix as CSR.
fn converted(sparse_below: f64) -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("model");
    convert(&fixture(), &dir, sparse_below, false).expect("convert fixture");
    (tmp, dir)
}

/// A temp dir with the fixture's beeg_config.json and final_model.pt (copied, so it may be damaged).
fn torch_copy() -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    for f in ["beeg_config.json", "final_model.pt"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

// ---------------------------------------------------------------------------------------------------------------
// Model directory and config.

#[test]
fn missing_model_dir() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("no-such-model");
    let e = load_err(&dir);
    assert_mentions(&e, &["no-such-model", "no such file"]);
    let line = expect_run_error(&dir, &["no-such-model", "no such file"]);
    assert_eq!(line.matches("no such file").count(), 1, "said twice: {line}");
    let line = expect_cli_error(&[
        "convert",
        dir.to_str().unwrap(),
        tmp.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(line.matches("no such file").count(), 1, "said twice: {line}");
}

#[test]
fn dir_without_config() {
    let (_tmp, dir) = converted(0.5);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::NoModel { .. }), "{e}");
    assert_mentions(&e, &[dir.to_str().unwrap(), "config.json"]);
    expect_run_error(&dir, &["no model found", "config.json"]);

    // An empty directory too.
    let empty = TempDir::new().unwrap();
    let e = load_err(empty.path());
    assert_mentions(&e, &["no model found"]);
    expect_run_error(empty.path(), &["no model found"]);
}

#[test]
fn config_not_json() {
    let (_tmp, dir) = converted(0.5);
    std::fs::write(dir.join("config.json"), "this is { not json").unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Config { .. }), "{e}");
    assert_mentions(&e, &["config.json", "invalid config"]);
    expect_run_error(&dir, &["config.json", "invalid config"]);

    // Valid JSON that is not an object.
    std::fs::write(dir.join("config.json"), "[1, 2]").unwrap();
    assert_mentions(&load_err(&dir), &["config.json", "object"]);
    // A key with the wrong type names the key.
    std::fs::write(dir.join("config.json"), r#"{"n_layer": "two"}"#).unwrap();
    assert_mentions(&load_err(&dir), &["config.json"]);
    expect_run_error(&dir, &["config.json"]);
}

#[test]
fn config_format_version_99() {
    let (_tmp, dir) = converted(0.5);
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["format_version"] = 99.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = load_err(&dir);
    assert_mentions(&e, &["config.json", "format_version 99", "newer"]);
    expect_run_error(&dir, &["config.json", "format_version 99"]);
}

#[test]
fn unknown_config_keys_warn() {
    let (_tmp, dir) = converted(0.5);
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["rtopk"] = 3.into();
    v["some_future_knob"] = "x".into();
    std::fs::write(&path, v.to_string()).unwrap();

    let loaded = Config::load(&path).unwrap();
    assert!(
        loaded.warnings.iter().any(|w| w.contains("rtopk")),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings.iter().any(|w| w.contains("some_future_knob")));
    let (_, warnings) = Gpt::load(&dir, LoadOptions::default()).expect("unknown keys are not an error");
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    let (ok, stdout, stderr) = cli(&["run", "--model", dir.to_str().unwrap(), "--tokens", "1,2,3"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.is_empty());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("rtopk")),
        "{stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------------------------
// model.safetensors.

/// An owned tensor for rewriting safetensors files.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for Raw {
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

/// Rewrites a safetensors file tensor by tensor: `edit` may change a tensor or drop it (return false); `meta` may
/// change the metadata.
fn rewrite(path: &Path, edit: impl Fn(&str, &mut Raw) -> bool, meta: impl Fn(&mut HashMap<String, String>)) {
    let bytes = std::fs::read(path).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut extra = m.metadata().clone().unwrap_or_default();
    meta(&mut extra);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let mut raw = Raw {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: view.data().to_vec(),
        };
        if edit(&name, &mut raw) {
            out.push((name, raw));
        }
    }
    let bytes = safetensors::tensor::serialize(out, Some(extra)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn weights(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}

#[test]
fn truncated_safetensors() {
    let (_tmp, dir) = converted(0.5);
    let path = weights(&dir);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Format { .. }), "{e}");
    assert_mentions(&e, &["model.safetensors"]);
    expect_run_error(&dir, &["model.safetensors"]);

    // Cut inside the header and inside the length prefix.
    for n in [20, 5, 0] {
        std::fs::write(&path, &bytes[..n]).unwrap();
        assert_mentions(&load_err(&dir), &["model.safetensors"]);
        expect_run_error(&dir, &["model.safetensors"]);
    }
}

#[test]
fn corrupt_safetensors_header() {
    let (_tmp, dir) = converted(0.5);
    let path = weights(&dir);

    // Garbage bytes.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "header"]);
    expect_run_error(&dir, &["model.safetensors", "header"]);

    // A header length larger than the file.
    let mut b = 1_000_000u64.to_le_bytes().to_vec();
    b.extend_from_slice(br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#);
    std::fs::write(&path, &b).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "header"]);
    expect_run_error(&dir, &["model.safetensors", "header"]);

    // A header that is not JSON.
    let mut b = 16u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"not json at all!");
    std::fs::write(&path, &b).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", "header"]);
    expect_run_error(&dir, &["model.safetensors", "header"]);

    // Offsets past the end of the data.
    let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0u8; 8]);
    std::fs::write(&path, &b).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors"]);
    expect_run_error(&dir, &["model.safetensors"]);
}

#[test]
fn safetensors_format_version_99() {
    let (_tmp, dir) = converted(0.5);
    rewrite(
        &weights(&dir),
        |_, _| true,
        |m| {
            m.insert("format_version".into(), "99".into());
        },
    );
    assert_mentions(&load_err(&dir), &["model.safetensors", "format_version 99"]);
    expect_run_error(&dir, &["model.safetensors", "format_version 99"]);
}

#[test]
fn missing_required_tensor() {
    let (_tmp, dir) = converted(0.5);
    let path = weights(&dir);
    let mut ck = Checkpoint::open(&path).unwrap();
    assert!(ck.tensors.remove(TENSOR).is_some());
    write_safetensors(&path, &ck.tensors, &[]).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    let msg = assert_mentions(&e, &["model.safetensors", TENSOR, "missing"]);
    assert_eq!(msg, format!("{}: missing required tensor `{TENSOR}`", path.display()));
    expect_run_error(&dir, &["model.safetensors", TENSOR, "missing"]);
}

#[test]
fn tensor_with_wrong_shape() {
    let (_tmp, dir) = converted(0.5);
    let path = weights(&dir);
    let mut ck = Checkpoint::open(&path).unwrap();
    ck.tensors.insert(
        TENSOR.into(),
        Stored::Dense(Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap()),
    );
    write_safetensors(&path, &ck.tensors, &[]).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Shape { .. }), "{e}");
    assert_mentions(&e, &["model.safetensors", TENSOR, "[3, 5]", "expected [64, 16]"]);
    expect_run_error(&dir, &["model.safetensors", TENSOR, "[3, 5]"]);

    // A 1-D tensor (a bias) with the wrong length.
    let mut ck = Checkpoint::open(&path).unwrap();
    ck.tensors.insert(
        TENSOR.into(),
        Stored::Dense(Tensor::zeros((64, 16), candle_core::DType::F32, &Device::Cpu).unwrap()),
    );
    let bias = "transformer.h.1.attn.c_proj.bias";
    ck.tensors.insert(
        bias.into(),
        Stored::Dense(Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap()),
    );
    write_safetensors(&path, &ck.tensors, &[]).unwrap();
    assert_mentions(&load_err(&dir), &["model.safetensors", bias, "[7]"]);
    expect_run_error(&dir, &["model.safetensors", bias]);
}

#[test]
fn tensor_with_wrong_byte_length() {
    // The header says (64, 16) F32 but the dtype says otherwise: the safetensors checks catch it.
    let (_tmp, dir) = converted(1e-9);
    rewrite(
        &weights(&dir),
        |name, raw| {
            if name == TENSOR {
                raw.dtype = Dtype::I64;
                raw.shape = vec![64, 8];
            }
            true
        },
        |_| {},
    );
    assert_mentions(&load_err(&dir), &["model.safetensors", TENSOR]);
    expect_run_error(&dir, &["model.safetensors", TENSOR]);
}

/// The fixture stored entirely as CSR.
fn csr_dir() -> (TempDir, PathBuf) {
    let (tmp, dir) = converted(2.0);
    let ck = Checkpoint::open(&weights(&dir)).unwrap();
    assert!(matches!(ck.tensors[TENSOR], Stored::Csr(_)), "{TENSOR} should be CSR");
    (tmp, dir)
}

#[test]
fn csr_loads() {
    let (_tmp, dir) = csr_dir();
    Gpt::load(&dir, LoadOptions::default()).expect("the CSR conversion loads");
}

#[test]
fn csr_missing_col_idx() {
    let (_tmp, dir) = csr_dir();
    let col = format!("{TENSOR}.csr.col_idx");
    rewrite(&weights(&dir), |name, _| name != col, |_| {});
    let e = load_err(&dir);
    assert_mentions(&e, &["model.safetensors", &col]);
    expect_run_error(&dir, &["model.safetensors", &col]);
}

#[test]
fn csr_missing_values_leaves_orphans() {
    let (_tmp, dir) = csr_dir();
    let values = format!("{TENSOR}.csr.values");
    rewrite(&weights(&dir), |name, _| name != values, |_| {});
    let e = load_err(&dir);
    assert_mentions(&e, &["model.safetensors", TENSOR]);
    expect_run_error(&dir, &["model.safetensors", TENSOR]);
}

#[test]
fn csr_col_idx_out_of_range() {
    let (_tmp, dir) = csr_dir();
    let col = format!("{TENSOR}.csr.col_idx");
    rewrite(
        &weights(&dir),
        |name, raw| {
            if name == col {
                raw.data[..4].copy_from_slice(&1000u32.to_le_bytes());
            }
            true
        },
        |_| {},
    );
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::BadTensor { .. }), "{e}");
    assert_mentions(&e, &["model.safetensors", TENSOR, "1000", "out of range"]);
    expect_run_error(&dir, &["model.safetensors", TENSOR, "out of range"]);
}

#[test]
fn csr_bad_row_ptr() {
    let (_tmp, dir) = csr_dir();
    let rp = format!("{TENSOR}.csr.row_ptr");
    // Drop the last entry: one row too few.
    rewrite(
        &weights(&dir),
        |name, raw| {
            if name == rp {
                let size = raw.data.len() / raw.shape[0];
                raw.shape[0] -= 1;
                raw.data.truncate(raw.data.len() - size);
            }
            true
        },
        |_| {},
    );
    assert_mentions(&load_err(&dir), &["model.safetensors", TENSOR, "row_ptr"]);
    expect_run_error(&dir, &["model.safetensors", TENSOR, "row_ptr"]);

    // A col_idx of the wrong dtype.
    let (_tmp, dir) = csr_dir();
    let col = format!("{TENSOR}.csr.col_idx");
    rewrite(
        &weights(&dir),
        |name, raw| {
            if name == col {
                raw.dtype = Dtype::F32;
            }
            true
        },
        |_| {},
    );
    assert_mentions(&load_err(&dir), &["model.safetensors", TENSOR, "col_idx"]);
    expect_run_error(&dir, &["model.safetensors", TENSOR, "col_idx"]);
}

#[test]
fn csr_missing_shape_metadata() {
    let (_tmp, dir) = csr_dir();
    let key = format!("{TENSOR}.csr.shape");
    rewrite(
        &weights(&dir),
        |_, _| true,
        |m| {
            assert!(m.remove(&key).is_some());
        },
    );
    let e = load_err(&dir);
    assert_mentions(&e, &["model.safetensors", TENSOR, &key, "missing"]);
    expect_run_error(&dir, &["model.safetensors", &key]);

    // A malformed shape.
    for bad in ["[64]", "nonsense", "[64, 16, 1]"] {
        rewrite(
            &weights(&dir),
            |_, _| true,
            |m| {
                m.insert(key.clone(), bad.into());
            },
        );
        assert_mentions(&load_err(&dir), &["model.safetensors", &key]);
        expect_run_error(&dir, &["model.safetensors", &key]);
    }
    // A shape that disagrees with the CSR arrays.
    rewrite(
        &weights(&dir),
        |_, _| true,
        |m| {
            m.insert(key.clone(), "[63, 16]".into());
        },
    );
    assert_mentions(&load_err(&dir), &["model.safetensors", TENSOR]);
    expect_run_error(&dir, &["model.safetensors", TENSOR]);
}

// ---------------------------------------------------------------------------------------------------------------
// final_model.pt.

#[test]
fn truncated_pt() {
    let (_tmp, dir) = torch_copy();
    let path = dir.join("final_model.pt");
    let bytes = std::fs::read(&path).unwrap();
    for n in [bytes.len() / 2, bytes.len() - 10, 100, 0] {
        std::fs::write(&path, &bytes[..n]).unwrap();
        let e = load_err(&dir);
        assert_mentions(&e, &["final_model.pt"]);
        expect_run_error(&dir, &["final_model.pt"]);
    }
}

#[test]
fn pt_not_a_zip() {
    let (_tmp, dir) = torch_copy();
    let path = dir.join("final_model.pt");
    std::fs::write(&path, b"this is not a zip file, just some text\n".repeat(20)).unwrap();
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::Format { .. }), "{e}");
    assert_mentions(&e, &["final_model.pt", "not a PyTorch zip"]);
    expect_run_error(&dir, &["final_model.pt"]);
}

/// IEEE CRC-32, as zip uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize
}

/// Renames a key in the pickle of a (stored, uncompressed) torch zip, in place and to a name of the same
/// length, fixing the CRCs so that the zip stays valid.
fn rename_pickle_key(path: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut b = std::fs::read(path).unwrap();
    let eocd = (0..b.len() - 21)
        .rev()
        .find(|&i| b[i..i + 4] == *b"PK\x05\x06")
        .unwrap();
    let (entries, cd) = (u16_at(&b, eocd + 10), u32_at(&b, eocd + 16));
    let mut at = cd;
    for _ in 0..entries {
        assert_eq!(&b[at..at + 4], b"PK\x01\x02");
        let (size, name_len) = (u32_at(&b, at + 20), u16_at(&b, at + 28));
        let (extra_len, comment_len) = (u16_at(&b, at + 30), u16_at(&b, at + 32));
        let name = String::from_utf8_lossy(&b[at + 46..at + 46 + name_len]).into_owned();
        if name.ends_with("data.pkl") {
            assert_eq!(u16_at(&b, at + 10), 0, "data.pkl must be stored uncompressed");
            let local = u32_at(&b, at + 42);
            let start = local + 30 + u16_at(&b, local + 26) + u16_at(&b, local + 28);
            let old_crc = crc32(&b[start..start + size]);
            let data = &mut b[start..start + size];
            let hits: Vec<usize> = (0..=data.len() - from.len())
                .filter(|&i| data[i..].starts_with(from.as_bytes()))
                .collect();
            assert!(!hits.is_empty(), "`{from}` not in the pickle");
            for i in hits {
                data[i..i + to.len()].copy_from_slice(to.as_bytes());
            }
            let new_crc = crc32(&b[start..start + size]).to_le_bytes();
            b[at + 16..at + 20].copy_from_slice(&new_crc);
            for crc_at in [local + 14, start + size, start + size + 4] {
                if b[crc_at..crc_at + 4] == old_crc.to_le_bytes() {
                    b[crc_at..crc_at + 4].copy_from_slice(&new_crc);
                }
            }
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn pt_missing_tensor() {
    let (_tmp, dir) = torch_copy();
    let path = dir.join("final_model.pt");
    // Sanity: the untouched copy loads, and so does one whose rename is undone.
    Gpt::load(&dir, LoadOptions::default()).expect("fixture copy loads");
    let renamed = format!("{}X", &TENSOR[..TENSOR.len() - 1]);
    rename_pickle_key(&path, TENSOR, &renamed);
    let e = load_err(&dir);
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    let msg = assert_mentions(&e, &["final_model.pt", TENSOR, "missing"]);
    assert_eq!(msg, format!("{}: missing required tensor `{TENSOR}`", path.display()));
    expect_run_error(&dir, &["final_model.pt", TENSOR, "missing"]);
    // Converting it fails too, and writes nothing.
    let out = dir.parent().unwrap().join("out");
    let line = expect_cli_error(&["convert", dir.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(line.contains(TENSOR), "{line}");
    assert!(!out.exists(), "a failed convert created {}", out.display());
}

#[test]
fn pt_missing_config_beside_it() {
    let (_tmp, dir) = torch_copy();
    std::fs::remove_file(dir.join("beeg_config.json")).unwrap();
    let e = load_err(&dir.join("final_model.pt"));
    assert_mentions(&e, &["no model found", "final_model.pt"]);
    expect_run_error(&dir.join("final_model.pt"), &["no model found"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Never overwrite user data.

#[test]
fn failed_convert_leaves_existing_output_alone() {
    let (_tmp, dir) = torch_copy();
    let path = dir.join("final_model.pt");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let out = TempDir::new().unwrap();
    let files: BTreeMap<&str, &[u8]> = [
        ("config.json", b"user config".as_slice()),
        ("model.safetensors", b"user weights".as_slice()),
    ]
    .into();
    for (f, content) in &files {
        std::fs::write(out.path().join(f), content).unwrap();
    }
    for force in [false, true] {
        let mut args = vec!["convert", dir.to_str().unwrap(), out.path().to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let line = expect_cli_error(&args);
        assert!(line.contains("final_model.pt"), "{line}");
        for (f, content) in &files {
            assert_eq!(std::fs::read(out.path().join(f)).unwrap(), *content, "{f} was touched");
        }
        let names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "stray files left: {names:?}");
    }
}

#[test]
fn convert_onto_its_own_input_is_refused() {
    let (_tmp, dir) = converted(0.5);
    let before = std::fs::read(weights(&dir)).unwrap();
    let line = expect_cli_error(&["convert", dir.to_str().unwrap(), dir.to_str().unwrap(), "--force"]);
    assert!(line.contains("same file"), "{line}");
    assert_eq!(std::fs::read(weights(&dir)).unwrap(), before);
}
