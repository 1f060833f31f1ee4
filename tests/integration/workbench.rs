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
