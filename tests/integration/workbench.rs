//! The UI-free workbench layer: one open gives the engine, the circuit and the session; the engine answers the
//! protocol synchronously and on its worker thread.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use circuitscope::workbench::{self, Ablation, AblationKind, OpenError, OpenOptions, Reply, Request};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options(circuit: PathBuf, session: Option<PathBuf>) -> OpenOptions {
    OpenOptions {
        model: root().join("assets/models/tinypython-sparse"),
        circuit: Some(circuit),
        task: "bracket_counting".into(),
        session,
        sae: None,
    }
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/tui/bracket_counting.json")
}

#[test]
fn one_open_gives_the_engine_the_circuit_and_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let session_path = dir.path().join("s.json");
    let opened = workbench::open(&options(fixture(), Some(session_path.clone()))).expect("the fixture opens");
    assert_eq!(opened.task, "bracket_counting");
    assert_eq!(opened.model_name, "tinypython-sparse");
    assert_eq!(opened.circuit.model.fingerprint, opened.fingerprint);
    assert_eq!(opened.engine.config().d_model, opened.config.d_model);
    let session = opened.session.expect("a session was asked for");
    assert_eq!(session.path, session_path);
    assert!(!session.existed);
    assert_eq!(session.session.circuit.nodes, opened.circuit.nodes.len());
    assert!(!opened.prompt.is_empty());

    let mut engine = opened.engine;
    let node = opened.circuit.node_ids()[0];
    let plain = match engine.handle(Request::Run {
        id: 7,
        text: opened.prompt.clone(),
        ablations: vec![],
    }) {
        Reply::Ran(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(plain.id, 7);
    assert_eq!(plain.acts[&node].len(), plain.tokens.len());
    let ablated = match engine.handle(Request::Run {
        id: 8,
        text: opened.prompt.clone(),
        ablations: vec![Ablation {
            node,
            kind: AblationKind::Zero,
        }],
    }) {
        Reply::Ran(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(
        ablated.acts[&node].iter().all(|&v| v == 0.0),
        "a zero-ablated node reads zero"
    );
}

#[test]
fn a_missing_circuit_is_a_clear_error() {
    let missing = root().join("tests/fixtures/tui/no-such-circuit.json");
    match workbench::open(&options(missing.clone(), None)) {
        Err(e @ OpenError::NoCircuit { .. }) => assert!(e.to_string().contains("no-such-circuit.json"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a missing circuit"),
    }
}

#[test]
fn the_worker_thread_hands_replies_to_its_callback_in_order() {
    let opened = workbench::open(&options(fixture(), None)).expect("the fixture opens");
    let (tx, rx) = mpsc::channel();
    let to_engine = workbench::spawn(opened.engine, move |reply| tx.send(reply).is_ok()).unwrap();
    to_engine.send(Request::Embedding { channel: 3 }).unwrap();
    to_engine
        .send(Request::PinRun {
            id: 1,
            text: opened.prompt.clone(),
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
        Reply::Embedding(v) => assert_eq!(v.channel, 3),
        other => panic!("{other:?}"),
    }
    match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
        Reply::Ran(r) => assert_eq!(r.id, 1),
        other => panic!("{other:?}"),
    }
    // Dropping the sender ends the thread; its callback's channel then closes.
    drop(to_engine);
    assert!(rx.recv_timeout(Duration::from_secs(120)).is_err());
}

fn ran(reply: Reply) -> circuitscope::workbench::RunSummary {
    match reply {
        Reply::Ran(r) => *r,
        other => panic!("{other:?}"),
    }
}

/// A run carries every node's direct effect on the task direction (the numbers `run --logit-diff --circuit`
/// prints for the same prompt) and the task loss and accuracy under its ablations.
#[test]
fn runs_carry_direct_effects_and_the_task_loss_and_accuracy() {
    let opened = workbench::open(&options(fixture(), None)).expect("the fixture opens");
    let mut engine = opened.engine;
    let prompt = "x = [[1, 2], [3";
    let plain = ran(engine.handle(Request::Run {
        id: 1,
        text: prompt.into(),
        ablations: vec![],
    }));
    assert!(!plain.direct_effects.is_empty());
    for n in opened.circuit.node_ids() {
        let has_path = !matches!(
            n.site,
            circuitscope::circuit::Site::AttnQ
                | circuitscope::circuit::Site::AttnK
                | circuitscope::circuit::Site::AttnActIn
                | circuitscope::circuit::Site::MlpActIn
        );
        assert_eq!(plain.direct_effects.contains_key(&n), has_path, "{n}");
    }
    // The CLI's numbers for the same prompt, targets and circuit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_circuitscope"))
        .args(["run", "--model"])
        .arg(root().join("assets/models/tinypython-sparse"))
        .args(["--prompt", prompt, "--logit-diff", "]]\n", "]\n", "--json", "--circuit"])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_nodes = v["logit_diff"]["nodes"].as_array().unwrap();
    assert_eq!(cli_nodes.len(), plain.direct_effects.len());
    for n in cli_nodes {
        let id: circuitscope::circuit::NodeId = n["id"].as_str().unwrap().parse().unwrap();
        let cli = n["value"].as_f64().unwrap() as f32;
        let lab = plain.direct_effects[&id];
        assert!(
            (cli - lab).abs() <= 1e-4 * (1.0 + cli.abs()),
            "{id}: CLI {cli}, lab {lab}"
        );
    }
    let diff = v["logit_diff"]["diff"].as_f64().unwrap() as f32;
    assert!((plain.logit_diff().unwrap() - diff).abs() < 1e-4);

    let (loss, acc) = (plain.task_loss.unwrap(), plain.task_accuracy.unwrap());
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(plain.task_pairs, 32);
    // Zero-ablating the whole circuit hurts the task.
    let all: Vec<Ablation> = opened
        .circuit
        .node_ids()
        .into_iter()
        .map(|node| Ablation {
            node,
            kind: AblationKind::Zero,
        })
        .collect();
    let ablated = ran(engine.handle(Request::Run {
        id: 2,
        text: prompt.into(),
        ablations: all,
    }));
    assert!(
        ablated.task_loss.unwrap() > loss,
        "{} vs {loss}",
        ablated.task_loss.unwrap()
    );
    assert!(ablated.task_accuracy.unwrap() <= acc);
}

/// `:pairs`: each node's A and B are its values at the decision token of the two prompts, averaged; the heads'
/// attention rows are the decision token's.
#[test]
fn pairs_compare_every_node_at_the_decision_token() {
    use circuitscope::data::tasks::{self, Split};
    let opened = workbench::open(&options(fixture(), None)).expect("the fixture opens");
    let mut engine = opened.engine;
    let v = match engine.handle(Request::Pairs {
        n: 3,
        ablations: vec![],
    }) {
        Reply::Pairs(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!((v.asked, v.pairs.len(), v.skipped), (3, 3, 0));
    assert_eq!(v.nodes.len(), opened.circuit.nodes.len());
    assert!(!v.heads.is_empty(), "the fixture has q/k/v nodes");
    // Recompute A and B from plain runs of the same prompts.
    let pairs = tasks::split(tasks::resolve("bracket_counting").unwrap().as_ref(), Split::Train, 3);
    let mut sums = std::collections::BTreeMap::new();
    for (i, p) in pairs.iter().enumerate() {
        for (side, text) in [(0, &p.prompt), (1, &p.prompt_alt)] {
            let r = ran(engine.handle(Request::Run {
                id: 10 + i as u64,
                text: text.clone(),
                ablations: vec![],
            }));
            for (n, vals) in &r.acts {
                let e = sums.entry(*n).or_insert([0f32; 2]);
                e[side] += vals.last().unwrap() / 3.0;
            }
            let tokens = if side == 0 {
                &v.pairs[i].tokens_a
            } else {
                &v.pairs[i].tokens_b
            };
            assert_eq!(tokens, &r.tokens);
        }
    }
    for row in &v.nodes {
        let [a, b] = sums[&row.node];
        assert!(
            (row.a - a).abs() < 1e-4 && (row.b - b).abs() < 1e-4,
            "{}: {row:?} vs {a} {b}",
            row.node
        );
        assert!((row.diff - (row.b - row.a)).abs() < 1e-6);
    }
    for p in &v.pairs {
        for h in &v.heads {
            let (a, b) = &p.attention[h];
            assert_eq!(a.weights.len(), p.tokens_a.len());
            assert_eq!(b.weights.len(), p.tokens_b.len());
            let total = a.weights.iter().sum::<f32>() + a.sink;
            assert!((total - 1.0).abs() < 1e-4, "{h:?}: {total}");
        }
        assert!(p.logit_diff.is_some());
    }
    // Under an ablation the ablated node reads zero on both sides.
    let node = opened.circuit.node_ids()[0];
    let abl = vec![Ablation {
        node,
        kind: AblationKind::Zero,
    }];
    match engine.handle(Request::Pairs {
        n: 2,
        ablations: abl.clone(),
    }) {
        Reply::Pairs(v) => {
            assert_eq!(v.ablations, abl);
            let row = v.nodes.iter().find(|r| r.node == node).unwrap();
            assert_eq!((row.a, row.b), (0.0, 0.0));
        }
        other => panic!("{other:?}"),
    }
}
