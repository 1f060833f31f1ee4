//! Explanations (N2G): planted nodes whose activation is a known function of the tokens get their pattern back
//! and score high on held-out text; a node of hashed noise scores low; the CLI stores explanations beside the
//! scan and refuses a corrupt file or another model's.

use std::path::{Path, PathBuf};

use circuitscope::analysis::explain::{
    self, explain_batch, Example, ExplainError, ExplainOptions, ExplanationsFile, HeldOut, NodeExamples, Probe, Query,
    Side,
};
use circuitscope::circuit::NodeId;
use serde_json::Value;
use tempfile::TempDir;

type Act = fn(&[u32], usize) -> f32;

/// A probe whose nodes are functions of the tokens up to t (what a forward pass with a causal mask gives).
struct Planted(Vec<(NodeId, Act)>);

impl Planted {
    fn f(&self, n: &NodeId) -> Act {
        self.0.iter().find(|(id, _)| id == n).expect("a planted node").1
    }
}

impl Probe for Planted {
    fn last_values(&self, queries: &[Query]) -> explain::Result<Vec<f32>> {
        Ok(queries
            .iter()
            .map(|q| (self.f(&q.node))(&q.tokens, q.tokens.len() - 1))
            .collect())
    }

    fn stream_values(&self, tokens: &[u32], seq_len: usize, nodes: &[NodeId]) -> explain::Result<Vec<Vec<f32>>> {
        Ok(nodes
            .iter()
            .map(|n| {
                let f = self.f(n);
                tokens
                    .chunks(seq_len)
                    .flat_map(|s| (0..s.len()).map(move |t| f(s, t)))
                    .collect()
            })
            .collect())
    }
}

const VOCAB: u64 = 40;
const SEQ: usize = 64;

fn stream(seed: u64, n: usize) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % VOCAB) as u32
        })
        .collect()
}

/// Fires 2.0 on token 7 right after token 3.
fn bigram(s: &[u32], t: usize) -> f32 {
    if s[t] == 7 && t >= 1 && s[t - 1] == 3 {
        2.0
    } else {
        0.0
    }
}

/// Fires 1.0 on token 9 two tokens after token 4 (anything between); −1.5 on token 5.
fn gapped_and_negative(s: &[u32], t: usize) -> f32 {
    if s[t] == 5 {
        -1.5
    } else if s[t] == 9 && t >= 2 && s[t - 2] == 4 {
        1.0
    } else {
        0.0
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sparse hashed noise of the last four tokens: fires (0.99..1) on 1% of the tokens, with no pattern shorter than
/// the four tokens themselves, which hardly recur.
fn noise(s: &[u32], t: usize) -> f32 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for d in 0..4 {
        let v = if d <= t { s[t - d] as u64 + 1 } else { 0 };
        h = (h ^ v).wrapping_mul(0x100_0000_01b3);
    }
    let u = (mix(h) >> 40) as f32 / (1u64 << 24) as f32;
    if u >= 0.99 {
        u
    } else {
        0.0
    }
}

/// The node's 8 strongest contexts per side in `train` (as a scan keeps them: 16 tokens before the peak).
fn examples(node: NodeId, f: Act, train: &[u32]) -> NodeExamples {
    let mut vals: Vec<(f32, usize)> = Vec::new();
    for (si, s) in train.chunks(SEQ).enumerate() {
        for t in 0..s.len() {
            vals.push((f(s, t), si * SEQ + t));
        }
    }
    let pick = |sign: f32| -> Vec<Example> {
        let mut v: Vec<(f32, usize)> = vals.iter().filter(|(a, _)| sign * a > 0.0).copied().collect();
        v.sort_by(|a, b| (sign * b.0).total_cmp(&(sign * a.0)).then(a.1.cmp(&b.1)));
        v.into_iter()
            .take(8)
            .map(|(value, at)| {
                let seq_start = at / SEQ * SEQ;
                let start = at.saturating_sub(16).max(seq_start);
                Example {
                    tokens: train[start..=at].to_vec(),
                    value,
                }
            })
            .collect()
    };
    NodeExamples {
        node,
        positive: pick(1.0),
        negative: pick(-1.0),
    }
}

fn display(id: u32) -> String {
    format!("<{id}>")
}

fn node(i: usize) -> NodeId {
    format!("0.mlp.post_act[{i}]").parse().unwrap()
}

fn explain_planted(train: &[u32], held: &[u32]) -> Vec<explain::NodeExplanation> {
    let planted = Planted(vec![
        (node(0), bigram),
        (node(1), gapped_and_negative),
        (node(2), noise),
    ]);
    let nodes: Vec<NodeExamples> = planted.0.iter().map(|&(id, f)| examples(id, f, train)).collect();
    let held = HeldOut {
        tokens: held.to_vec(),
        seq_len: SEQ,
    };
    let opts = ExplainOptions {
        pad: 0,
        ..ExplainOptions::default()
    };
    explain_batch(&planted, &nodes, &held, &opts, &display).unwrap()
}

#[test]
fn planted_patterns_come_back_and_score_high_on_held_out_text() {
    let train = stream(1, 64 * SEQ);
    let held = stream(2, 64 * SEQ);
    let out = explain_planted(&train, &held);

    let bigram = &out[0];
    let pos = bigram.positive.as_ref().unwrap();
    assert_eq!(pos.patterns.len(), 1, "{:?}", pos.patterns);
    assert_eq!(pos.patterns[0].tokens, vec![Some(3), Some(7)]);
    assert_eq!(bigram.explanation, "fires on \"<7>\" after \"<3>\"");
    assert!(bigram.negative.is_none());
    assert!(bigram.correlation.unwrap() >= 0.95, "{:?}", bigram.correlation);
    assert_eq!((pos.fires.precision, pos.fires.recall), (Some(1.0), Some(1.0)));

    let gapped = &out[1];
    let pos = gapped.positive.as_ref().unwrap();
    assert_eq!(pos.patterns[0].tokens, vec![Some(4), None, Some(9)]);
    let neg = gapped.negative.as_ref().unwrap();
    assert_eq!(neg.patterns[0].tokens, vec![Some(5)]);
    assert_eq!(
        gapped.explanation,
        "fires on \"<9>\" after \"<4>\" …; negative on \"<5>\""
    );
    assert!(gapped.correlation.unwrap() >= 0.95, "{:?}", gapped.correlation);
    assert!(gapped.is_good());
}

#[test]
fn a_noise_node_scores_low_on_held_out_text_though_its_exemplars_match() {
    let train = stream(1, 64 * SEQ);
    let held = stream(2, 64 * SEQ);
    let noise = &explain_planted(&train, &held)[2];
    let c = noise.correlation.unwrap_or(0.0);
    assert!(c < 0.3, "noise correlation {c}");
    assert!(!noise.is_good());
    let held = noise.positive.as_ref().unwrap().fires;
    assert!(held.recall.unwrap_or(0.0) < 0.2, "{held:?}");
    assert!(held.precision.unwrap_or(0.0) < 0.5, "{held:?}");
    // Scored on the text its exemplars came from, the same patterns look perfect: why scores are held out.
    let in_sample = &explain_planted(&train, &train)[2];
    let fires = in_sample.positive.as_ref().unwrap().fires;
    let (p_in, p_held) = (fires.precision.unwrap_or(0.0), held.precision.unwrap_or(0.0));
    assert!(p_in >= 0.5 && p_in > p_held + 0.3, "{fires:?} vs {held:?}");
    assert!(
        in_sample.correlation.unwrap_or(0.0) > c + 0.2,
        "{:?} vs {c}",
        in_sample.correlation
    );
}

#[test]
fn no_held_out_text_is_an_error() {
    let planted = Planted(vec![(node(0), bigram)]);
    let nodes = [examples(node(0), bigram, &stream(1, 8 * SEQ))];
    let held = HeldOut {
        tokens: vec![],
        seq_len: SEQ,
    };
    let e = explain_batch(&planted, &nodes, &held, &ExplainOptions::default(), &display).unwrap_err();
    assert!(matches!(e, ExplainError::NoHeldOut), "{e}");
    // A side that is absent stays absent.
    assert!(nodes[0].side(Side::Negative).is_empty());
}

// ---- the command, on a copy of the bundled sparse model ----

fn bundled_copy(tmp: &TempDir) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/tinypython-sparse");
    let dst = tmp.path().join("model");
    std::fs::create_dir_all(dst.join("scan")).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    for f in ["index.json", "stats.bin", "exemplars.bin", "tokens.bin"] {
        std::fs::copy(src.join("scan").join(f), dst.join("scan").join(f)).unwrap();
    }
    dst
}

use crate::common::cli_parts as cli;

#[test]
fn the_command_stores_explanations_beside_the_scan_and_refuses_bad_files() {
    let tmp = TempDir::new().unwrap();
    let model = bundled_copy(&tmp);
    let m = model.to_str().unwrap();
    let args = [
        "explain",
        "--model",
        m,
        "--node",
        "0.attn.v[5]",
        "--node",
        "1.mlp.post_act[10]",
        "--held-out-tokens",
        "2048",
        "--json",
    ];
    let (ok, stdout, stderr) = cli(&args);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["computed"], 2);
    assert_eq!(v["held_out"]["split"], "held_out");
    assert_eq!(v["held_out"]["tokens"], 2048);
    assert_eq!(v["summary"]["nodes"], 2);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["id"], "0.attn.v[5]");
    for n in nodes {
        assert!(n["explanation"].as_str().is_some());
        assert!(n["correlation"].is_null() || n["correlation"].as_f64().unwrap().abs() <= 1.0);
    }
    let path = model.join("scan").join(explain::EXPLANATIONS_FILE);
    let stored = ExplanationsFile::load(&path).unwrap();
    assert_eq!(stored.nodes.len(), 2);
    assert_eq!(stored.held_out.split, "held_out");

    // Kept, not recomputed.
    let mut reuse = args.to_vec();
    reuse.push("--reuse");
    let (ok, stdout, stderr) = cli(&reuse);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["computed"].as_u64(), v["reused"].as_u64()), (Some(0), Some(2)));

    // Another model's explanations: a one-line refusal, the file untouched.
    let mut other = stored.clone();
    other.fingerprint = "0123456789abcdef".into();
    other.save(&path).unwrap();
    let (ok, _, stderr) = cli(&args);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("made for model") && stderr.contains("(0123456789abcdef)"),
        "{stderr}"
    );
    assert!(matches!(
        ExplanationsFile::load_for(&path, &stored.fingerprint),
        Err(ExplainError::ModelMismatch { .. })
    ));

    // A corrupt file likewise, until --replace.
    std::fs::write(&path, b"{\"format_version\": 1, \"nodes\": 7").unwrap();
    let (ok, _, stderr) = cli(&args);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("corrupt explanations file"), "{stderr}");
    std::fs::write(&path, b"{\"format_version\": 99}").unwrap();
    let (ok, _, stderr) = cli(&args);
    assert!(!ok && stderr.contains("newer"), "{stderr}");
    let mut replace = args.to_vec();
    replace.push("--replace");
    let (ok, _, stderr) = cli(&replace);
    assert!(ok, "{stderr}");
    assert_eq!(ExplanationsFile::load(&path).unwrap().nodes.len(), 2);

    // Unknown nodes and missing selections are refused.
    let (ok, _, stderr) = cli(&["explain", "--model", m, "--node", "7.mlp.post_act[0]"]);
    assert!(!ok && stderr.contains("7.mlp.post_act"), "{stderr}");
    let (ok, _, stderr) = cli(&["explain", "--model", m]);
    assert!(!ok && stderr.contains("--all"), "{stderr}");
}

// ---- the workbench ----

fn workbench_text(app: &circuitscope::tui::App, w: u16, h: u16) -> String {
    crate::common::screen_text(&crate::common::draw(app, w, h))
}

#[test]
fn the_workbench_shows_explanations_and_accept_takes_one_as_the_label() {
    use circuitscope::analysis::explain::store::{HeldOutRef, ScanRef};
    use circuitscope::analysis::explain::{FireScore, NodeExplanation, Pattern, SideExplanation};
    use circuitscope::session::Evidence;
    use circuitscope::tui::{self, update, ColorMode, Msg, OpenOptions, Screen, Theme};

    let tmp = TempDir::new().unwrap();
    let model = bundled_copy(&tmp);
    let circuit = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/circuits/tinypython-sparse/if_equals.json");
    let nodes = circuitscope::circuit::CircuitFile::load(&circuit).unwrap().nodes;
    let (first, second) = (nodes[0].id, nodes[1].id);
    let scan: Value = serde_json::from_str(&std::fs::read_to_string(model.join("scan/index.json")).unwrap()).unwrap();
    let text = "fires on \"==\" after \" x\"";
    let file = ExplanationsFile {
        format_version: explain::EXPLAIN_FORMAT_VERSION,
        fingerprint: scan["fingerprint"].as_str().unwrap().to_string(),
        model_name: None,
        scan: ScanRef {
            corpus: "synthetic:0".into(),
            tokens: 262_144,
        },
        held_out: HeldOutRef {
            corpus: "synthetic:0".into(),
            split: "held_out".into(),
            tokens: 2048,
            seq_len: 128,
        },
        options: ExplainOptions::default(),
        nodes: [(
            first,
            NodeExplanation {
                explanation: text.into(),
                correlation: Some(0.91),
                positive: Some(SideExplanation {
                    text: text.into(),
                    patterns: vec![Pattern {
                        tokens: vec![Some(1), Some(2)],
                        value: 1.0,
                        count: 3,
                    }],
                    fires: FireScore {
                        threshold: 0.5,
                        precision: Some(0.8),
                        recall: Some(0.7),
                        fired: 10,
                        predicted: 9,
                    },
                }),
                negative: None,
            },
        )]
        .into(),
    };
    let path = model.join("scan").join(explain::EXPLANATIONS_FILE);
    file.save(&path).unwrap();
    let session = tmp.path().join("s.json");
    let opts = OpenOptions {
        model: model.clone(),
        circuit: Some(circuit.clone()),
        task: "if_equals".into(),
        session: Some(session.clone()),
        sae: None,
    };
    let loaded = tui::load(&opts, Theme::new(ColorMode::None)).unwrap();
    assert!(
        loaded.warnings.iter().all(|w| !w.contains("explanations")),
        "{:?}",
        loaded.warnings
    );
    let (mut app, mut engine) = (loaded.app, loaded.engine);
    app.show_timing = false;
    tui::pump(&mut app, &mut engine);
    let send = |app: &mut tui::App, engine: &mut circuitscope::workbench::Engine, s: &str| {
        for m in Msg::typed(s) {
            update(app, m);
            tui::pump(app, engine);
        }
    };
    send(&mut app, &mut engine, &format!(":goto {first}\n"));
    // The map: the selected, unlabeled node shows its explanation, marked automatic.
    let map = workbench_text(&app, 120, 40);
    assert!(map.contains("~fires on \"=="), "{map}");
    // The inspector: the explanation with its score, and the way to accept it.
    app.set_screen(Screen::Inspector);
    // Wide enough that the 40% node pane does not wrap the line.
    let inspector = workbench_text(&app, 200, 50);
    assert!(inspector.contains("auto: fires on"), "{inspector}");
    assert!(inspector.contains("corr 0.91 · P 0.80 R 0.70"), "{inspector}");
    // :accept: the label, with the score as evidence; the map then shows the label, not the automatic one.
    send(&mut app, &mut engine, ":accept\n");
    let a = &app.annotations[&first];
    assert_eq!(a.label, text);
    assert!(a.label_is_automatic());
    assert!(a
        .evidence
        .iter()
        .any(|e| matches!(e, Evidence::Explanation { correlation: Some(c), .. } if (*c - 0.91).abs() < 1e-6)));
    app.set_screen(Screen::Map);
    assert!(!workbench_text(&app, 120, 40).contains("~fires"));
    // The export marks the label automatic.
    let report = tmp.path().join("r.md");
    send(&mut app, &mut engine, &format!(":export {}\n", report.display()));
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("(automatic)"), "{md}");
    assert!(md.contains("automatic explanation (N2G"), "{md}");
    // A node without an explanation says how to make one.
    send(&mut app, &mut engine, &format!(":goto {second}\n:accept\n"));
    assert!(app.status.contains("no automatic explanation"), "{}", app.status);
    assert!(app.annotations.get(&second).is_none_or(|a| a.label.is_empty()));

    // Another model's explanations: the workbench opens without them and says why.
    let mut other = file.clone();
    other.fingerprint = "0123456789abcdef".into();
    other.save(&path).unwrap();
    let loaded = tui::load(
        &OpenOptions {
            session: None,
            ..opts.clone()
        },
        Theme::new(ColorMode::None),
    )
    .unwrap();
    assert!(loaded.app.auto.is_empty());
    let w = loaded.warnings.join("\n");
    assert!(
        w.contains("explanations not used") && w.contains("0123456789abcdef"),
        "{w}"
    );
    std::fs::write(&path, b"not json").unwrap();
    let loaded = tui::load(&OpenOptions { session: None, ..opts }, Theme::new(ColorMode::None)).unwrap();
    assert!(loaded.warnings.join("\n").contains("corrupt explanations file"));
}

/// The notes view lists unlabeled nodes' automatic explanations beside the analyst's annotations, filters them by
/// score (`score>=0.7`, `auto`) and sorts them by score either way, rows without a score last.
#[test]
fn the_notes_view_sorts_and_filters_by_explanation_score() {
    use circuitscope::session::{Annotation, Evidence};
    use circuitscope::tui::screens::notes::{self, NotesAction, NotesSort};
    use circuitscope::tui::{self, ColorMode, OpenOptions, Screen, Theme};
    use circuitscope::workbench::AutoLabel;

    let tmp = TempDir::new().unwrap();
    let circuit = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/circuits/tinypython-sparse/if_equals.json");
    let nodes = circuitscope::circuit::CircuitFile::load(&circuit).unwrap().nodes;
    let (a, b, c, d) = (nodes[0].id, nodes[1].id, nodes[2].id, nodes[3].id);
    let opts = OpenOptions {
        model: Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/tinypython-sparse"),
        circuit: Some(circuit),
        task: "if_equals".into(),
        session: Some(tmp.path().join("s.json")),
        sae: None,
    };
    let mut app = tui::load(&opts, Theme::new(ColorMode::None)).unwrap().app;
    let auto = |text: &str, corr: f32| AutoLabel {
        text: text.into(),
        correlation: Some(corr),
        precision: None,
        recall: None,
        score: format!("corr {corr:.2}"),
    };
    // a: automatic only, well explained; b: automatic only, badly; c: the analyst accepted an explanation
    // (its evidence's score counts); d: the analyst's own label, no score (its automatic one no longer counts).
    app.auto = [
        (a, auto("fires on \"==\"", 0.92)),
        (b, auto("fires on \" x\"", 0.21)),
        (d, auto("fires on \"if\"", 0.99)),
    ]
    .into();
    app.annotations.insert(
        c,
        Annotation {
            label: "fires on \"(\"".into(),
            evidence: vec![Evidence::Explanation {
                text: "fires on \"(\"".into(),
                correlation: Some(0.55),
                precision: None,
                recall: None,
            }],
            ..Annotation::default()
        },
    );
    app.annotations.insert(
        d,
        Annotation {
            label: "the if detector".into(),
            ..Annotation::default()
        },
    );
    app.set_screen(Screen::Notes);
    let order = |want: &[NodeId]| {
        let mut w = want.to_vec();
        w.sort_by_key(|n| n.forward_order());
        w
    };
    assert_eq!(notes::rows(&app), order(&[a, b, c, d]));
    assert_eq!(notes::score(&app, &d), None);

    notes::perform(&mut app, NotesAction::CycleSort);
    assert_eq!(app.notes.sort, NotesSort::ScoreDown);
    assert_eq!(notes::rows(&app), vec![a, c, b, d]);
    notes::perform(&mut app, NotesAction::CycleSort);
    assert_eq!(notes::rows(&app), vec![b, c, a, d]);

    app.notes.filter = "score>=0.5".into();
    assert_eq!(notes::rows(&app), vec![c, a]);
    app.notes.filter = "auto score<0.5".into();
    assert_eq!(notes::rows(&app), vec![b]);
    app.notes.filter = "\" x\"".into();
    assert_eq!(notes::rows(&app), vec![b]);
    app.notes.filter = "score>=oops".into();
    assert!(
        notes::rows(&app).is_empty(),
        "an unparsable bound is an ordinary word, matching nothing here"
    );

    // Drawn: the automatic rows dimmed with their scores, the order in the title.
    app.notes.filter.clear();
    let screen = workbench_text(&app, 140, 30);
    assert!(screen.contains("and 2 automatic"), "{screen}");
    assert!(screen.contains("score, worst first"), "{screen}");
    assert!(screen.contains("automatic") && screen.contains("corr 0.21"), "{screen}");
    assert!(screen.contains(":accept takes this as the label"), "{screen}");
}
