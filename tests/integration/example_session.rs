//! The shipped example session (`sessions/example.json`, written by `cargo run -p xtask -- example-session`)
//! still matches the bundled model, circuit and report.

use std::path::PathBuf;

use circuitscope::analysis::scan::ScanIndex;
use circuitscope::circuit::{model_fingerprint, CircuitFile, NodeId};
use circuitscope::export::{self, ReportInput};
use circuitscope::model::{Checkpoint, Config, ModelFiles};
use circuitscope::session::{store, Evidence};
use circuitscope::workbench;

const MODEL: &str = "assets/models/tinypython-sparse";
const CIRCUIT: &str = "assets/circuits/tinypython-sparse/bracket_counting.json";
const SESSION: &str = "sessions/example.json";
const REPORT: &str = "docs/example-report.md";
const TASK: &str = "bracket_counting";

/// The shipped example: it loads, it is a session of the bundled model and circuit (fingerprint and node set),
/// every circuit node is labeled with evidence, it opens in the workbench without a warning, and its export is
/// the committed report.
#[test]
fn example_session_matches_the_bundled_model_and_circuit() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let session = store::load(&root.join(SESSION))
        .unwrap()
        .expect("sessions/example.json is shipped");
    assert_eq!(
        session.model.path.as_deref(),
        Some(MODEL),
        "paths are relative to the repository root"
    );
    assert_eq!(session.circuit.path, CIRCUIT);
    assert_eq!(session.circuit.task, TASK);

    let dir = root.join(MODEL);
    let files = ModelFiles::locate(&dir).unwrap();
    let cfg = Config::load(&files.config).unwrap().config;
    let ckpt = Checkpoint::open(&files.weights).unwrap();
    let fingerprint = model_fingerprint(&ckpt, &cfg).unwrap();
    assert_eq!(
        session.model.fingerprint, fingerprint,
        "the session was made for the bundled model"
    );

    let circuit = CircuitFile::load(&root.join(CIRCUIT)).unwrap();
    assert_eq!(circuit.model.fingerprint, fingerprint);
    let mut ids = circuit.node_ids();
    ids.sort();
    let annotated: Vec<NodeId> = session.annotations.keys().copied().collect();
    assert_eq!(
        annotated, ids,
        "every node of the bundled circuit is annotated, and nothing else"
    );
    assert_eq!(session.circuit.nodes, ids.len());
    for (n, a) in &session.annotations {
        assert!(!a.label.is_empty(), "{n} has no label");
        assert!(!a.notes.is_empty(), "{n} has no notes");
        assert!(a.confidence.is_some(), "{n} has no confidence");
        assert!(
            a.evidence.iter().any(|e| matches!(e, Evidence::Prompt { .. }))
                && a.evidence.iter().any(|e| matches!(e, Evidence::Ablation { .. })),
            "{n} lacks prompt or ablation evidence"
        );
    }
    assert!(session.summary.contains("Adversarial prompts"));
    assert!(session.saved_prompts.iter().any(|p| p.name.starts_with("attack: ")));

    // It opens in the workbench as `open --session sessions/example.json` opens it: writable, no warnings.
    std::env::set_current_dir(&root).unwrap();
    let opts = workbench::OpenOptions {
        model: PathBuf::from(MODEL),
        circuit: Some(PathBuf::from(CIRCUIT)),
        task: TASK.into(),
        session: Some(PathBuf::from(SESSION)),
        sae: None,
    };
    let loaded =
        circuitscope::tui::load(&opts, circuitscope::tui::Theme::new(circuitscope::tui::ColorMode::None)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.app.annotations.len(), ids.len());
    drop(loaded);

    // The export succeeds and is the committed report.
    let scan = ScanIndex::open_for(&ScanIndex::default_dir(&dir), &fingerprint).unwrap();
    let tok = workbench::model_tokenizer(&dir).unwrap();
    let md = export::markdown(&ReportInput {
        session: &session,
        circuit: &circuit,
        exemplars: export::scan_exemplars(&scan, &tok, circuit.node_ids(), 3),
        top_k: 3,
    });
    assert!(md.contains("## Mechanism") && md.contains("```mermaid"));
    // The bundled circuit has more edges than the chart draws; the chart stays inside GitHub's mermaid limits
    // (500 edges, 50,000 characters).
    let chart = &md[md.find("```mermaid").unwrap()..];
    let chart = &chart[..chart[3..].find("```").unwrap() + 3];
    assert_eq!(chart.matches("-->").count(), export::MERMAID_MAX_EDGES);
    assert!(chart.len() < 50_000, "{} characters", chart.len());
    let committed = std::fs::read_to_string(root.join(REPORT)).unwrap();
    assert!(
        md == committed,
        "{REPORT} is not the export of {SESSION}: `circuitscope export {SESSION} -o {REPORT}` rewrites it"
    );
}
