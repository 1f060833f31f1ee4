//! The crash test: every writer of circuitscope, run as the real binary and killed (SIGKILL) at random
//! moments, must leave its output whole: byte for byte one of the outputs a complete run gives (never a
//! truncation, an empty file, or a model directory mixing two conversions), and the next complete run must
//! leave no temp file (`*.cstmp`) and no lock file behind.
//!
//! CI runs the fast writers a few rounds each. The full run (docs/reliability.md has its figures):
//! `CRASH_ROUNDS=200 cargo test --release --test integration crash:: -- --ignored --nocapture`; `train` and
//! `prune -o` alone: `CRASH_SLOW_ROUNDS=12 cargo test --test integration crash::killed_train -- --ignored` (and
//! `crash::killed_prune`)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use circuitscope::tokenize::bytes::{byte_to_char, rank_to_byte};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MODEL: &str = "assets/models/tinypython-sparse";

/// One writer under test: the argument lists of its variants (`{w}` is the work folder) and the outputs
/// (files or folders, relative to the work folder) that must always be whole.
struct Writer {
    name: &'static str,
    variants: Vec<Vec<String>>,
    outputs: Vec<&'static str>,
    setup: fn(&Path),
}

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn no_setup(_: &Path) {}

fn toy_tokenizer_files(w: &Path) {
    // Two vocabularies: the byte alphabet with one merge, and with two.
    for (suffix, merges) in [("", &["Ġ Ġ", "i n"][..]), ("2", &["Ġ Ġ"][..])] {
        let mut enc = BTreeMap::new();
        let mut ranks: Vec<String> = (0..=255u8).map(|r| byte_to_char(rank_to_byte(r)).to_string()).collect();
        ranks.extend(merges.iter().map(|m| m.replace(' ', "")));
        for (i, t) in ranks.into_iter().enumerate() {
            enc.insert(t, i as u32);
        }
        let n = enc.len() as u32;
        enc.insert("<|endoftext|>".to_string(), n);
        std::fs::write(
            w.join(format!("encoder{suffix}.json")),
            serde_json::to_string(&enc).unwrap(),
        )
        .unwrap();
        let bpe = format!("# BPE Encoder v3\n{}\n", merges.join("\n"));
        std::fs::write(w.join(format!("vocab{suffix}.bpe")), bpe).unwrap();
    }
}

fn circuit_copy(w: &Path) {
    std::fs::copy(
        Path::new(ROOT).join("assets/circuits/tinypython-sparse/bracket_counting.json"),
        w.join("circuit.json"),
    )
    .unwrap();
}

/// The writers that take well under a second a run (CI).
fn fast_writers() -> Vec<Writer> {
    vec![
        Writer {
            name: "session merge",
            variants: vec![args(
                "session merge -o {w}/merged.json sessions/example.json sessions/example.json",
            )],
            outputs: vec!["merged.json"],
            setup: no_setup,
        },
        Writer {
            name: "export",
            variants: vec![
                args("export sessions/example.json -o {w}/report.md"),
                args("export sessions/example.json --json -o {w}/report.md"),
            ],
            outputs: vec!["report.md"],
            setup: no_setup,
        },
        Writer {
            name: "convert",
            variants: vec![
                args("convert tests/fixtures/reference-gpt/rms_sink_topk_bigram {w}/model --force"),
                args("convert tests/fixtures/reference-gpt/layernorm_tied_relu {w}/model --force"),
            ],
            outputs: vec!["model"],
            setup: no_setup,
        },
        Writer {
            name: "tokenizer import",
            variants: vec![
                args("tokenizer import {w}/encoder.json {w}/vocab.bpe -o {w}/tokenizer.json --force"),
                args("tokenizer import {w}/encoder2.json {w}/vocab2.bpe -o {w}/tokenizer.json --force"),
            ],
            outputs: vec!["tokenizer.json"],
            setup: toy_tokenizer_files,
        },
    ]
}

/// The writers that run for seconds (the full run only).
fn slow_writers() -> Vec<Writer> {
    vec![
        Writer {
            name: "tokenizer train",
            variants: vec![
                args("tokenizer train --corpus synthetic --docs 50 --vocab 1024 -o {w}/tok.json --force"),
                args("tokenizer train --corpus synthetic:1 --docs 50 --vocab 1024 -o {w}/tok.json --force"),
            ],
            outputs: vec!["tok.json"],
            setup: no_setup,
        },
        Writer {
            name: "circuit check",
            variants: vec![args(&format!(
                "circuit check {{w}}/circuit.json --model {MODEL} --pairs 8"
            ))],
            outputs: vec!["circuit.json"],
            setup: circuit_copy,
        },
        Writer {
            name: "eval --markdown",
            variants: vec![
                args(&format!(
                    "eval --model {MODEL} --tasks bracket_counting --pairs 8 --markdown {{w}}/eval.md"
                )),
                args(&format!(
                    "eval --model {MODEL} --tasks if_equals --pairs 8 --markdown {{w}}/eval.md"
                )),
            ],
            outputs: vec!["eval.md"],
            setup: no_setup,
        },
        Writer {
            name: "scan --out",
            variants: vec![
                args(&format!("scan --model {MODEL} --tokens 600 --out {{w}}/scan")),
                args(&format!("scan --model {MODEL} --tokens 900 --out {{w}}/scan")),
            ],
            outputs: vec!["scan"],
            setup: no_setup,
        },
    ]
}

/// `prune -o`: a short prune, two tasks in turn into one file (the full run only). Few steps and pairs, and a
/// target loss so loose that the bisection ends at a circuit of a few nodes, whose per-node and per-edge
/// ablations are quick: the writes are the same as a real prune's.
fn prune_writer() -> Writer {
    let prune = |task: &str| {
        args(&format!(
            "prune --model {MODEL} --task {task} --steps 2 --train-pairs 4 --eval-pairs 4 --target-loss 100 \
             -o {{w}}/circuit.json --force"
        ))
    };
    Writer {
        name: "prune -o",
        variants: vec![prune("if_equals"), prune("for_while")],
        outputs: vec!["circuit.json"],
        setup: no_setup,
    }
}

/// Every file under the outputs, by path: what a reader would find.
type Snapshot = BTreeMap<String, Vec<u8>>;

fn snapshot(work: &Path, outputs: &[&str]) -> Snapshot {
    fn walk(base: &Path, p: &Path, out: &mut Snapshot) {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().flatten().map(|e| e.path()).collect();
                entries.sort();
                for e in entries {
                    walk(base, &e, out);
                }
            }
            Ok(_) => {
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read(p).unwrap_or_default());
            }
            Err(_) => {}
        }
    }
    let mut s = Snapshot::new();
    for o in outputs {
        walk(work, &work.join(o), &mut s);
    }
    s
}

fn command(variant: &[String], work: &Path) -> Command {
    let w = work.display().to_string();
    let mut c = Command::new(env!("CARGO_BIN_EXE_circuitscope"));
    c.args(variant.iter().map(|a| a.replace("{w}", &w)))
        .current_dir(ROOT)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn run_whole(variant: &[String], work: &Path) -> Duration {
    let t = Instant::now();
    let out = command(variant, work).output().unwrap();
    assert!(
        out.status.success(),
        "{variant:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// Temp and lock files anywhere under `dir` (paths relative to it).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".cstmp") || name.ends_with(".lock") {
                found.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    found
}

/// What one writer's crash rounds gave.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    killed_mid_run: usize,
    corrupt: usize,
    zero_length: usize,
    missing: usize,
    leftovers_after_next_run: usize,
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn crash(writer: &Writer, rounds: usize, seed: u64) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    (writer.setup)(work);
    // The reference outputs: a complete run of each variant. The second run of a variant must give the same
    // bytes (the writers are deterministic), so that "one of the references" is a sharp test.
    let mut refs: Vec<Snapshot> = Vec::new();
    let mut took = Vec::new();
    for v in &writer.variants {
        took.push(run_whole(v, work));
        let s = snapshot(work, &writer.outputs);
        assert!(!s.is_empty(), "{}: a complete run wrote nothing", writer.name);
        refs.push(s);
    }
    run_whole(&writer.variants[0], work);
    assert_eq!(
        snapshot(work, &writer.outputs),
        refs[0],
        "{}: two complete runs differ",
        writer.name
    );
    let mut rng = Rng(seed | 1);
    let mut t = Tally {
        rounds,
        ..Tally::default()
    };
    for round in 0..rounds {
        let v = round % writer.variants.len();
        let d = took[v].as_secs_f64();
        // Half the kills anywhere in the run, half in its last quarter, where the writes are.
        let at = if round % 2 == 0 {
            d * 1.1 * rng.unit()
        } else {
            d * (0.75 + 0.3 * rng.unit())
        };
        let mut child = command(&writer.variants[v], work)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(at));
        if child.try_wait().unwrap().is_none() {
            t.killed_mid_run += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let now = snapshot(work, &writer.outputs);
        if now.is_empty() {
            t.missing += 1;
        } else if now.values().any(Vec::is_empty) {
            t.zero_length += 1;
        } else if !refs.contains(&now) {
            t.corrupt += 1;
            eprintln!(
                "{} round {round}: the output is none of the complete runs' ({:?})",
                writer.name,
                now.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
            );
        }
    }
    run_whole(writer.variants.last().unwrap(), work);
    let left = leftovers(work);
    if !left.is_empty() {
        eprintln!("{}: left after the next complete run: {left:?}", writer.name);
    }
    t.leftovers_after_next_run = left.len();
    t
}

fn rounds(default: usize) -> usize {
    std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

fn run_all(writers: &[Writer], rounds: usize) {
    let mut bad = Vec::new();
    for (i, w) in writers.iter().enumerate() {
        let t = crash(w, rounds, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        eprintln!(
            "crash: {:<18} rounds {:>4}, killed mid-run {:>4}, corrupt {}, zero-length {}, missing {}, left behind {}",
            w.name, t.rounds, t.killed_mid_run, t.corrupt, t.zero_length, t.missing, t.leftovers_after_next_run
        );
        if t.corrupt + t.zero_length + t.missing + t.leftovers_after_next_run > 0 {
            bad.push(format!("{}: {t:?}", w.name));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// What the `train` crash rounds gave.
#[derive(Debug, Default)]
struct TrainTally {
    rounds: usize,
    killed_mid_run: usize,
    /// Runs that ended on their own with an error (a resume that could not read what a kill left).
    failed: usize,
    /// Rounds after which some file of the run was torn, empty or unreadable.
    broken: usize,
    /// Rounds after which the log's steps were not 1, 2, ... (a step logged twice, a torn line).
    bad_log: usize,
    /// Runs that reached the last step (the next round starts a fresh run).
    completed: usize,
    leftovers_after_next_run: usize,
}

/// What a reader finds in a run folder after a kill, checked file by file: `Err` names the first broken one.
/// Whole means: `train_config.json` and `tokenizer.json` parse; the checkpoint is absent or complete (state,
/// weights and optimiser moments all readable, at a checkpoint step); the exported model is absent or its config
/// and weights load together; every log line is a whole record and the steps run 1, 2, ... without a gap or a
/// repeat. Returns the checkpoint's step.
fn whole_run(run: &Path, checkpoint_steps: &[usize]) -> Result<Option<usize>, String> {
    use circuitscope::model::{Checkpoint, Config, Gpt, LoadOptions};
    let cfg_path = run.join("train_config.json");
    if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| format!("train_config.json: {e}"))?;
        serde_json::from_str::<circuitscope::train::TrainConfig>(&text)
            .map_err(|e| format!("train_config.json: {e}"))?;
    }
    if run.join("tokenizer.json").exists() {
        circuitscope::tokenize::Tokenizer::load(run.join("tokenizer.json"))
            .map_err(|e| format!("tokenizer.json: {e}"))?;
    }
    let ckpt = run.join("checkpoint");
    let mut step = None;
    let entries: Vec<_> = std::fs::read_dir(&ckpt)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !entries.is_empty() {
        let state = std::fs::read_to_string(ckpt.join("state.json")).map_err(|e| format!("checkpoint: {e}"))?;
        let state: serde_json::Value =
            serde_json::from_str(&state).map_err(|e| format!("checkpoint/state.json: {e}"))?;
        let s = state["step"].as_u64().ok_or("checkpoint/state.json: no step")? as usize;
        if !checkpoint_steps.contains(&s) {
            return Err(format!("checkpoint at step {s}, not a checkpoint step"));
        }
        for f in ["model.safetensors", "optim.safetensors"] {
            Checkpoint::open(&ckpt.join(f)).map_err(|e| format!("checkpoint: {e}"))?;
        }
        step = Some(s);
    }
    let (config, weights) = (run.join("config.json"), run.join("model.safetensors"));
    if config.exists() || weights.exists() {
        let cfg = Config::load(&config).map_err(|e| e.to_string())?.config;
        let ck = Checkpoint::open(&weights).map_err(|e| e.to_string())?;
        Gpt::from_checkpoint(cfg, &ck, LoadOptions::default()).map_err(|e| format!("exported model: {e}"))?;
    }
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap_or_default();
    for (i, line) in log.split_inclusive('\n').enumerate() {
        let record: serde_json::Value = line
            .strip_suffix('\n')
            .and_then(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("log.jsonl line {}: not a whole record: {line:?}", i + 1))?;
        if record["step"].as_u64() != Some(i as u64 + 1) {
            return Err(format!(
                "log.jsonl line {}: step {}, expected {}",
                i + 1,
                record["step"],
                i + 1
            ));
        }
    }
    Ok(step)
}

/// `train --preset test` (6 steps, a checkpoint every 3) killed at random moments, each round continuing the
/// run with `--resume` (a fresh run once one has finished): every kill must leave the old files or complete new
/// ones, and every resume must start from a complete checkpoint. At the end the crash-ridden run, resumed to
/// its end, must have the weights of an uninterrupted run (to 1e-5, as `train::resume_reproduces_...`) and no
/// temp or lock file.
fn crash_train(rounds: usize, seed: u64) -> TrainTally {
    use circuitscope::model::Checkpoint;
    const STEPS: usize = 6;
    const CHECKPOINTS: [usize; 2] = [3, 6];
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let reference = work.join("reference");
    let train = |out: &Path, tokenizer: Option<&Path>, resume: bool| {
        let mut v = args(&format!("train --preset test --out {}", out.display()));
        if let Some(t) = tokenizer {
            v.extend(["--tokenizer".to_string(), t.display().to_string()]);
        }
        if resume {
            v.push("--resume".into());
        }
        v
    };
    // The reference run trains the tokenizer once; the rounds reuse it, so that a round is the training itself.
    run_whole(&train(&reference, None, false), work);
    let tok = work.join("tokenizer.json");
    std::fs::copy(reference.join("tokenizer.json"), &tok).unwrap();
    // A round's length: a complete run with the tokenizer given (the reference's included training one).
    let timing = work.join("timing");
    let took = run_whole(&train(&timing, Some(&tok), false), work).as_secs_f64();
    std::fs::remove_dir_all(&timing).unwrap();
    let run = work.join("run");
    let mut rng = Rng(seed | 1);
    let mut t = TrainTally {
        rounds,
        ..TrainTally::default()
    };
    for round in 0..rounds {
        let resume = run.join("train_config.json").exists();
        let at = if round % 2 == 0 {
            took * 1.1 * rng.unit()
        } else {
            took * (0.5 + 0.6 * rng.unit())
        };
        let mut child = command(&train(&run, Some(&tok), resume), work)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(at));
        match child.try_wait().unwrap() {
            None => t.killed_mid_run += 1,
            Some(status) if !status.success() => {
                t.failed += 1;
                eprintln!("train round {round}: the run (resume: {resume}) failed by itself: {status}");
            }
            Some(_) => {}
        }
        let _ = child.kill();
        child.wait().unwrap();
        match whole_run(&run, &CHECKPOINTS) {
            Ok(Some(STEPS)) if run.join("model.safetensors").exists() => {
                t.completed += 1;
                std::fs::remove_dir_all(&run).unwrap();
            }
            Ok(_) => {}
            Err(e) if e.starts_with("log.jsonl") => {
                t.bad_log += 1;
                eprintln!("train round {round}: {e}");
            }
            Err(e) => {
                t.broken += 1;
                eprintln!("train round {round}: {e}");
            }
        }
    }
    let resume = run.join("train_config.json").exists();
    run_whole(&train(&run, Some(&tok), resume), work);
    if let Err(e) = whole_run(&run, &CHECKPOINTS) {
        t.broken += 1;
        eprintln!("train: after the last resume: {e}");
    }
    let logged = std::fs::read_to_string(run.join("log.jsonl")).unwrap().lines().count();
    if logged != STEPS {
        t.bad_log += 1;
        eprintln!("train: the finished run's log has {logged} records for {STEPS} steps");
    }
    let (a, b) = (
        Checkpoint::open(&reference.join("model.safetensors")).unwrap(),
        Checkpoint::open(&run.join("model.safetensors")).unwrap(),
    );
    for (name, ta) in &a.tensors {
        let flat = |c: &circuitscope::model::Stored| -> Vec<f32> {
            c.to_dense().unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        let diff = flat(ta)
            .iter()
            .zip(&flat(&b.tensors[name]))
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-5,
            "train: `{name}` differs by {diff} from an uninterrupted run"
        );
    }
    let left = leftovers(work);
    if !left.is_empty() {
        eprintln!("train: left after the next complete run: {left:?}");
    }
    t.leftovers_after_next_run = left.len();
    t
}

fn run_train(rounds: usize) {
    let t = crash_train(rounds, 0x2545_f491_4f6c_dd1d);
    eprintln!(
        "crash: {:<18} rounds {:>4}, killed mid-run {:>4}, failed {}, broken {}, bad log {}, completed {}, left behind {}",
        "train", t.rounds, t.killed_mid_run, t.failed, t.broken, t.bad_log, t.completed, t.leftovers_after_next_run
    );
    assert_eq!(t.failed + t.broken + t.bad_log + t.leftovers_after_next_run, 0, "{t:?}");
}

#[test]
fn killed_writers_leave_whole_files() {
    run_all(&fast_writers(), rounds(3));
}

/// The full run: every writer, `CRASH_ROUNDS` (200) rounds each, the slow ones `CRASH_SLOW_ROUNDS` (as many);
/// minutes for the fast writers, hours for all of them at 200.
#[test]
#[ignore]
fn killed_writers_leave_whole_files_full() {
    let n = rounds(200);
    run_all(&fast_writers(), n);
    let slow = std::env::var("CRASH_SLOW_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(n);
    run_all(&slow_writers(), slow);
    run_all(&[prune_writer()], slow);
    run_train(slow);
}

/// `train` alone, `CRASH_SLOW_ROUNDS` (12) rounds: a quicker check of it than the full run.
#[test]
#[ignore]
fn killed_train_leaves_whole_files() {
    run_train(slow_rounds());
}

/// `prune -o` alone, `CRASH_SLOW_ROUNDS` (12) rounds.
#[test]
#[ignore]
fn killed_prune_leaves_whole_files() {
    run_all(&[prune_writer()], slow_rounds());
}

fn slow_rounds() -> usize {
    std::env::var("CRASH_SLOW_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12)
}

/// Two processes race for one session lock: exactly one holds it, the other is told who does; when the
/// holder dies (killed, no cleanup) the lock is free at once.
#[test]
fn the_session_lock_is_held_by_one_process_and_freed_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.json");
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        Command::new(&exe)
            .args([
                "--exact",
                "crash::lock_holder_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CS_LOCK_SESSION", &session)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn();
    let mut b = spawn();
    let read_line = |c: &mut std::process::Child| {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(c.stdout.as_mut().unwrap());
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                return String::new();
            }
            // libtest prints the test's name on the same line.
            if let Some(at) = line.find("lock:") {
                return line[at..].trim().to_owned();
            }
        }
    };
    let (la, lb) = (read_line(&mut a), read_line(&mut b));
    let holders = [&la, &lb].iter().filter(|l| l.as_str() == "lock: held").count();
    assert_eq!(holders, 1, "{la} / {lb}");
    let (holder, other_line) = if la == "lock: held" {
        (&mut a, &lb)
    } else {
        (&mut b, &la)
    };
    assert!(
        other_line.contains(&format!("in use by process {}", holder.id())),
        "{other_line}"
    );
    // The holder dies without any cleanup; the OS drops its lock.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    circuitscope::session::store::SessionLock::acquire(&session).expect("the dead holder's lock is free");
}

/// The child of the lock race: takes the session lock, says whether it got it, then holds it until killed.
#[test]
#[ignore]
fn lock_holder_child() {
    let Ok(session) = std::env::var("CS_LOCK_SESSION") else {
        return;
    };
    match circuitscope::session::store::SessionLock::acquire(Path::new(&session)) {
        Ok(lock) => {
            println!("lock: held");
            std::thread::sleep(Duration::from_secs(60));
            drop(lock);
        }
        Err(e) => {
            println!("lock: {e}");
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// Two `circuit check` runs on one circuit file: the one started later waits for the first (saying so), then
/// measures on top of the first's result and writes last; the later run's measurement is never lost to an
/// earlier one finishing after it.
#[test]
fn a_second_circuit_check_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    circuit_copy(dir.path());
    let file = dir.path().join("circuit.json");
    let check = |pairs: &str| {
        let w = file.display().to_string();
        Command::new(env!("CARGO_BIN_EXE_circuitscope"))
            .args(["circuit", "check", &w, "--model", MODEL, "--pairs", pairs])
            .current_dir(ROOT)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = check("24");
    // The first holds the lock from its start: wait until its lock file shows.
    let lock = dir.path().join("circuit.json.lock");
    let t = Instant::now();
    while !lock.exists() && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = check("8");
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(
        String::from_utf8_lossy(&b.stderr).contains("waiting for it"),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let c = circuitscope::circuit::CircuitFile::load(&file).unwrap();
    assert_eq!(c.losses.check_pairs, Some(8));
    assert!(!lock.exists());
}
