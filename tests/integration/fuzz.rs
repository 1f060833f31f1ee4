//! Mutation fuzzers, one per parser: proptest mutates a valid file (overwrite, insert, delete, bit flip, a
//! byte run set to 0xff or 0x00) and the parser must answer Ok or Err, never panic, abort or run away with
//! memory. Not run by default (`#[ignore]`); each target runs for `FUZZ_SECS` seconds (default 30):
//!
//! ```text
//! FUZZ_SECS=120 cargo test --test integration fuzz:: -- --ignored --test-threads=1
//! ```
//!
//! The process limits its own address space to 4 GB first, so a believed size claim fails the run as a panic
//! (allocation failure aborts, which the runner reports) instead of swapping the machine. A crash found here
//! becomes a case in `hostile.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use circuitscope::model::torch_pickle::unpickle;
use circuitscope::model::{Checkpoint, Config};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

fn limit_memory() {
    let lim = libc::rlimit {
        rlim_cur: 4 << 30,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on this process's own limits.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
}

/// One mutation: (position as a fraction of the length, kind, byte, run length).
fn mutations() -> impl Strategy<Value = Vec<(u32, u8, u8, u8)>> {
    prop::collection::vec(any::<(u32, u8, u8, u8)>(), 1..8)
}

/// Applies mutations to `seed` within `window` (a byte range the format's parser reads first, or all).
fn mutate(seed: &[u8], window: std::ops::Range<usize>, muts: &[(u32, u8, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(pos, kind, byte, run) in muts {
        let span = window.end.min(out.len()).saturating_sub(window.start).max(1);
        let at = (window.start + (pos as usize % span)).min(out.len());
        match kind % 6 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 if at < out.len() => out[at] ^= 1 << (byte % 8),
            4 => {
                let end = (at + run as usize).min(out.len());
                out[at..end].fill(0xff);
            }
            _ => {
                let end = (at + run as usize).min(out.len());
                out[at..end].fill(0);
            }
        }
    }
    out
}

/// Runs `target` on mutants of `seed` until the time budget is spent; returns the number of cases.
fn fuzz(name: &str, seed: &[u8], window: std::ops::Range<usize>, target: impl Fn(&[u8])) -> u64 {
    limit_memory();
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    let mut round = 0u32;
    while Instant::now() < deadline {
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 64,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0000 + round as u64),
            ..RunnerConfig::default()
        });
        round += 1;
        let result = runner.run(&mutations(), |muts| {
            target(&mutate(seed, window.clone(), &muts));
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz {name}: {e}");
        }
        cases += 64;
    }
    eprintln!("fuzz {name}: {cases} cases in {:?}, no crash", budget());
    cases
}

fn pkl_of(pt: &Path) -> Vec<u8> {
    let file = std::fs::File::open(pt).unwrap();
    let mut z = zip::ZipArchive::new(file).unwrap();
    let name = z
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .expect("data.pkl");
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name(&name).unwrap(), &mut buf).unwrap();
    buf
}

#[test]
#[ignore]
fn pickle_of_viz_data() {
    let seed = pkl_of(&root().join("tests/fixtures/reference-viz/rms_sink_topk_bigram/viz_data.pt"));
    fuzz("viz_data pickle", &seed, 0..seed.len(), |b| {
        let _ = unpickle(b);
    });
}

#[test]
#[ignore]
fn pickle_of_state_dict() {
    let seed = pkl_of(&root().join("tests/fixtures/reference-gpt/layernorm_tied_relu/final_model.pt"));
    fuzz("state dict pickle", &seed, 0..seed.len(), |b| {
        let _ = unpickle(b);
    });
}

#[test]
#[ignore]
fn torch_zip_checkpoint() {
    let seed = std::fs::read(root().join("tests/fixtures/reference-gpt/layernorm_tied_relu/final_model.pt")).unwrap();
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("final_model.pt");
    fuzz("final_model.pt", &seed, 0..seed.len(), |b| {
        std::fs::write(&path, b).unwrap();
        let _ = Checkpoint::open_torch(&path);
    });
}

#[test]
#[ignore]
fn viz_data_import() {
    let seed = std::fs::read(root().join("tests/fixtures/reference-viz/rms_sink_topk_bigram/viz_data.pt")).unwrap();
    let cfg = Config::from_json_str(
        r#"{"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 256, "vocab_size": 2048, "block_size": 64}"#,
    )
    .unwrap()
    .config;
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("viz_data.pt");
    // The pickle sits near the start of the zip; mutate there and in the central directory at the end.
    fuzz("viz_data.pt", &seed, 0..seed.len(), |b| {
        std::fs::write(&path, b).unwrap();
        let target = circuitscope::circuit::ImportTarget {
            config: &cfg,
            fingerprint: "f".into(),
            name: None,
            path: None,
        };
        let _ = circuitscope::circuit::import_viz_data(&path, &target, "t");
    });
}

#[test]
#[ignore]
fn config_json() {
    let seed = std::fs::read(root().join("tests/fixtures/reference-gpt/layernorm_tied_relu/beeg_config.json")).unwrap();
    fuzz("config.json", &seed, 0..seed.len(), |b| {
        let _ = Config::from_json_str(&String::from_utf8_lossy(b));
    });
}

#[test]
#[ignore]
fn safetensors_header_and_csr() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("m");
    circuitscope::cli::convert::convert(
        &root().join("tests/fixtures/reference-gpt/layernorm_tied_relu"),
        &dir,
        2.0,
        false,
    )
    .unwrap();
    let seed = std::fs::read(dir.join("model.safetensors")).unwrap();
    let header = 8 + u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let path = tmp.path().join("model.safetensors");
    // Header and data alike: the header's offsets and the CSR triples' contents are both claims to check.
    fuzz("model.safetensors header", &seed, 0..header, |b| {
        std::fs::write(&path, b).unwrap();
        let _ = Checkpoint::open_safetensors(&path);
    });
    fuzz("model.safetensors data", &seed, header..seed.len(), |b| {
        std::fs::write(&path, b).unwrap();
        let _ = Checkpoint::open_safetensors(&path);
    });
}

#[test]
#[ignore]
fn tokenizer_json() {
    let seed = std::fs::read(root().join("assets/models/tinypython-dense/tokenizer.json")).unwrap();
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("tokenizer.json");
    fuzz("tokenizer.json", &seed, 0..seed.len(), |b| {
        std::fs::write(&path, b).unwrap();
        if let Ok(t) = circuitscope::tokenize::Tokenizer::load(&path) {
            let _ = t.encode("def f(x):\n    return x\n");
        }
    });
}

#[test]
#[ignore]
fn session_json() {
    let seed = std::fs::read(root().join("sessions/example.json")).unwrap();
    fuzz("session", &seed, 0..seed.len(), |b| {
        let _ = circuitscope::session::Session::from_json(&String::from_utf8_lossy(b), "s.json");
    });
}

#[test]
#[ignore]
fn circuit_file() {
    let seed = std::fs::read(root().join("assets/circuits/tinypython-dense/bracket_counting.json")).unwrap();
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("c.json");
    fuzz("circuit file", &seed, 0..seed.len(), |b| {
        std::fs::write(&path, b).unwrap();
        let _ = circuitscope::circuit::CircuitFile::load(&path);
    });
}

#[test]
#[ignore]
fn scan_index() {
    let src = root().join("assets/models/tinypython-dense/scan");
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("scan");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    for file in ["index.json", "stats.bin"] {
        let seed = std::fs::read(src.join(file)).unwrap();
        let window = 0..seed.len().min(1 << 16);
        fuzz(&format!("scan {file}"), &seed, window, |b| {
            std::fs::write(dir.join(file), b).unwrap();
            let _ = circuitscope::analysis::scan::ScanIndex::open(&dir);
        });
        std::fs::write(dir.join(file), &seed).unwrap();
    }
}
