//! Sessions: scripted UI tests (annotate, attach evidence, save, reopen), golden export and merge, the markdown
//! parsed back, a writer killed mid-save, and bad input.
//!
//! Golden files are in tests/fixtures/session/; `UPDATE_GOLDEN=1` rewrites them (review the diff).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::send;
use circuitscope::circuit::{CircuitFile, NodeId};
use circuitscope::export::{self, ReportInput, ShownExemplar};
use circuitscope::session::{
    self, store, AblationMode, AblationSpec, Annotation, CircuitRef, Evidence, Session, SessionError, SessionLock,
    SessionModel, Status,
};
use circuitscope::tui::{self, App, ColorMode, Engine, Msg, OpenOptions, Theme};
use ratatui::crossterm::event::KeyCode;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn circuit_path() -> PathBuf {
    root().join("tests/fixtures/tui/bracket_counting.json")
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/fixtures/session").join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok() || !path.exists() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn open_session(path: &Path) -> Result<tui::Loaded, tui::TuiError> {
    let opts = OpenOptions {
        model: root().join("assets/models/tinypython-sparse"),
        circuit: Some(circuit_path()),
        task: "bracket_counting".into(),
        session: Some(path.to_path_buf()),
        sae: None,
    };
    tui::load(&opts, Theme::new(ColorMode::TrueColor))
}

fn command(app: &mut App, engine: &mut Engine, line: &str) {
    send(app, engine, [Msg::ch(':')]);
    send(app, engine, Msg::typed(line));
    send(app, engine, [Msg::key(KeyCode::Enter)]);
}

fn node(s: &str) -> NodeId {
    s.parse().unwrap()
}

#[test]
fn label_evidence_save_reopen_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let target = node("1.attn.q[62]");
    {
        let tui::Loaded {
            mut app, mut engine, ..
        } = open_session(&path).unwrap();
        tui::pump(&mut app, &mut engine);
        command(&mut app, &mut engine, &format!("goto {target}"));
        // Label with the key: `c` opens the command line prefilled with `label `.
        send(&mut app, &mut engine, [Msg::ch('c')]);
        send(&mut app, &mut engine, Msg::typed("open-bracket query | `depth`"));
        send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
        command(&mut app, &mut engine, "note reads the depth\\nsecond line");
        command(&mut app, &mut engine, "tags depth, attention");
        send(&mut app, &mut engine, [Msg::ch('s')]); // hypothesis → supported
        command(&mut app, &mut engine, "confidence 0.8");
        send(&mut app, &mut engine, [Msg::ch('m')]);
        // Prompt evidence, then an ablation and its evidence.
        send(&mut app, &mut engine, [Msg::ch('E')]);
        send(&mut app, &mut engine, [Msg::ch('a')]);
        send(&mut app, &mut engine, [Msg::ctrl('e')]);
        send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('p')]);
        // Saved off the input path: the keys only marked the session dirty; a pause in the input (a tick)
        // hands it to the writer thread.
        tui::update(&mut app, Msg::Tick);
        app.wait_for_saves();
        assert!(path.exists(), "autosaved");
        let s = store::load(&path).unwrap().unwrap();
        let a = &s.annotations[&target];
        assert_eq!(a.label, "open-bracket query | `depth`");
        assert_eq!(a.notes, "reads the depth\nsecond line");
        assert_eq!(a.tags, vec!["depth", "attention"]);
        assert_eq!(a.status, Status::Supported);
        assert_eq!(a.confidence, Some(0.8));
        assert_eq!(a.evidence.len(), 2, "{:?}", a.evidence);
        match &a.evidence[0] {
            Evidence::Prompt {
                magnitudes, logit_diff, ..
            } => {
                assert!(magnitudes.contains_key(&target));
                assert!(logit_diff.is_some());
            }
            e => panic!("{e:?}"),
        }
        match &a.evidence[1] {
            Evidence::Ablation {
                ablations,
                logit_diff_before,
                logit_diff_after,
                loss_before,
                loss_after,
                ..
            } => {
                assert_eq!(ablations[0].node, target);
                assert_ne!(logit_diff_before, logit_diff_after);
                // The task loss on held-out pairs, before and after the ablation.
                assert!(
                    loss_before.is_some() && loss_after.is_some(),
                    "{loss_before:?} {loss_after:?}"
                );
                assert_ne!(loss_before, loss_after);
            }
            e => panic!("{e:?}"),
        }
        // A second instance cannot write it while this one is open.
        let second = open_session(&path).unwrap();
        let st = second.app.session.as_ref().unwrap();
        assert!(
            st.read_only.as_deref().unwrap_or("").contains("in use by process"),
            "{:?}",
            st.read_only
        );
        command(&mut app, &mut engine, "save");
        assert!(app.status.starts_with("saved"), "{}", app.status);
    }
    // Reopened: everything restored.
    let before = std::fs::read_to_string(&path).unwrap();
    let tui::Loaded {
        mut app, mut engine, ..
    } = open_session(&path).unwrap();
    tui::pump(&mut app, &mut engine);
    assert_eq!(app.selected, Some(target));
    assert!(app.marks.contains(&target));
    assert_eq!(app.lab.ablations.len(), 1);
    assert_eq!(app.annotations[&target].label, "open-bracket query | `depth`");
    assert!(app.lab.baseline.is_some());
    assert_eq!(app.lab.pinned_text.as_deref(), Some(app.prompt_text().as_str()));
    assert_eq!(app.lab.run.as_ref().unwrap().ablations.len(), 1);
    // Opening changed nothing, so nothing was written.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    // The notes view lists it and Enter jumps to it.
    command(&mut app, &mut engine, "goto 0.mlp.act_in[21]");
    send(&mut app, &mut engine, [Msg::ch('4'), Msg::ch('f')]);
    send(&mut app, &mut engine, Msg::typed("depth\n"));
    assert_eq!(app.notes_rows(), vec![target]);
    send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.selected, Some(target));
    // :export writes a report.
    let md = dir.path().join("r.md");
    command(&mut app, &mut engine, &format!("export {}", md.display()));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("open-bracket query \\| \\`depth\\`"), "{text}");
}

fn fixed_session(fingerprint: &str) -> Session {
    let mut s = Session::new(
        SessionModel {
            fingerprint: fingerprint.into(),
            name: Some("tinypython-sparse".into()),
            path: Some("assets/models/tinypython-sparse".into()),
        },
        CircuitRef {
            path: "tests/fixtures/tui/bracket_counting.json".into(),
            task: "bracket_counting".into(),
            nodes: 29,
        },
    );
    s.created = "2026-11-01T10:00:00Z".into();
    s.modified = "2026-11-01T11:00:00Z".into();
    s
}

/// Token strings that break naive markdown: pipes, backticks, fences, HTML, newlines, control characters.
const NASTY: &[&str] = &[
    "a|b", "`", "```", "<script>", "</td>", "\n", "\r\n", "\t", "*", "_", "[x](y)", "# h", "- ", "\\", "|", "\u{7}",
    "é", "🦀", "\u{202e}", "&amp;", "\"", "#", "--", "-->", "]", "}", "%%",
];

fn nasty_session(fp: &str) -> Session {
    let mut s = fixed_session(fp);
    s.summary = "The circuit counts | depth.\n\nSecond ```paragraph``` <b>not bold</b>".into();
    let q = node("1.attn.q[62]");
    let mut magnitudes = BTreeMap::new();
    magnitudes.insert(q, 1.25);
    magnitudes.insert(node("1.attn.k[62]"), -0.5);
    s.annotations.insert(
        q,
        Annotation {
            label: "depth | `query`\n<br> \"quoted\" #1 -->".into(),
            notes: "line one | pipe\nline two ```\n\n# not a heading\n- not a list".into(),
            tags: vec!["a|b".into(), "`t`".into()],
            status: Status::Supported,
            confidence: Some(0.75),
            evidence: vec![
                Evidence::Prompt {
                    prompt: NASTY.concat(),
                    tokens: NASTY.iter().map(|t| t.to_string()).collect(),
                    position: 2,
                    magnitudes,
                    logit_diff: Some(1.5),
                    ablations: vec![],
                    note: "note | `x`".into(),
                },
                Evidence::Ablation {
                    ablations: vec![AblationSpec {
                        node: q,
                        mode: AblationMode::Zero,
                    }],
                    prompt: "x = [[1, 2], [3, 4".into(),
                    logit_diff_before: Some(2.0),
                    logit_diff_after: Some(-0.5),
                    loss_before: Some(0.3),
                    loss_after: Some(0.9),
                    note: String::new(),
                },
            ],
            conflict: vec![],
        },
    );
    s.annotations.insert(
        node("final_resid[98]"),
        Annotation {
            label: "]\"] A[\"x".into(),
            status: Status::Refuted,
            ..Annotation::default()
        },
    );
    s
}

fn nasty_exemplars() -> BTreeMap<NodeId, Vec<ShownExemplar>> {
    let mut m = BTreeMap::new();
    m.insert(
        node("1.attn.q[62]"),
        vec![ShownExemplar {
            tokens: NASTY.iter().map(|t| t.to_string()).collect(),
            acts: (0..NASTY.len()).map(|i| i as f32 / 10.0).collect(),
            pivot: 3,
        }],
    );
    m
}

#[test]
fn export_of_a_fixed_session_equals_the_golden_file() {
    let circuit = CircuitFile::load(&circuit_path()).unwrap();
    let s = nasty_session(&circuit.model.fingerprint);
    let input = ReportInput {
        session: &s,
        circuit: &circuit,
        exemplars: nasty_exemplars(),
        top_k: 3,
    };
    golden("report.md", &export::markdown(&input));
    golden(
        "report.json",
        &(serde_json::to_string_pretty(&export::json(&input)).unwrap() + "\n"),
    );
}

#[test]
fn export_is_valid_markdown_whatever_the_tokens() {
    use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
    let circuit = CircuitFile::load(&circuit_path()).unwrap();
    let s = nasty_session(&circuit.model.fingerprint);
    let md = export::markdown(&ReportInput {
        session: &s,
        circuit: &circuit,
        exemplars: nasty_exemplars(),
        top_k: 3,
    });
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut cell: Option<String> = None;
    let mut code: Option<(String, String)> = None;
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut headings = Vec::new();
    let mut in_heading = false;
    for ev in Parser::new_ext(&md, Options::ENABLE_TABLES) {
        match ev {
            Event::Start(Tag::Table(_)) => tables.push(Vec::new()),
            Event::Start(Tag::TableHead) | Event::Start(Tag::TableRow) => row.clear(),
            Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                tables.last_mut().unwrap().push(std::mem::take(&mut row))
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => row.push(cell.take().unwrap()),
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(i) => i.to_string(),
                    CodeBlockKind::Indented => "indented".into(),
                };
                code = Some((info, String::new()));
            }
            Event::End(TagEnd::CodeBlock) => blocks.push(code.take().unwrap()),
            Event::Start(Tag::Heading { .. }) => in_heading = true,
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
                if let Some(c) = cell.as_mut() {
                    c.push_str(&t);
                }
                if let Some((_, c)) = code.as_mut() {
                    c.push_str(&t);
                }
                if in_heading {
                    headings.push(t.to_string());
                }
            }
            _ => {}
        }
    }
    // One code block, the mermaid one, holding the whole flowchart and nothing else.
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let (info, body) = &blocks[0];
    assert_eq!(info, "mermaid");
    assert!(body.starts_with("flowchart TD\n"));
    let node_lines = body
        .lines()
        .filter(|l| l.trim_start().starts_with('n') && l.contains("[\""))
        .count();
    assert_eq!(node_lines, circuit.nodes.len());
    for l in body.lines().skip(1) {
        // Every label is one quoted string: exactly two unescaped quotes, none of the characters mermaid reads.
        if let Some(i) = l.find("[\"") {
            let inner = &l[i + 2..l.rfind("\"]").unwrap()];
            assert!(
                !inner.contains('"') && !inner.contains('`') && !inner.contains('<') || inner.contains("<br/>"),
                "{l}"
            );
        }
    }
    // Tables: losses, nodes, edges; every row as wide as its header.
    assert_eq!(tables.len(), 3, "{tables:#?}");
    for t in &tables {
        for r in t {
            assert_eq!(r.len(), t[0].len(), "{t:?}");
        }
    }
    let nodes = &tables[1];
    assert_eq!(nodes.len(), circuit.nodes.len() + 1);
    let q = nodes.iter().find(|r| r[0] == "1.attn.q[62]").unwrap();
    assert_eq!(q[1], "depth | `query`<br><br> \"quoted\" #1 -->");
    assert_eq!(q[2], "supported");
    assert_eq!(tables[2].len(), circuit.edges.len() + 1);
    // The nasty tokens did not open headings or lists of their own.
    assert!(headings.iter().all(|h| !h.contains("not a heading")), "{headings:?}");
}

#[test]
fn merge_of_two_fixed_sessions_equals_the_golden_file() {
    let fp = "fp";
    let mut a = fixed_session(fp);
    let mut b = fixed_session(fp);
    b.created = "2026-11-02T09:00:00Z".into();
    b.modified = "2026-11-02T12:00:00Z".into();
    let q = node("1.attn.q[62]");
    let k = node("1.attn.k[62]");
    let v = node("1.attn.v[2]");
    a.annotations.insert(
        q,
        Annotation {
            label: "bracket depth query".into(),
            notes: "A's notes".into(),
            tags: vec!["depth".into()],
            status: Status::Supported,
            confidence: Some(0.9),
            ..Annotation::default()
        },
    );
    b.annotations.insert(
        q,
        Annotation {
            label: "list-end detector".into(),
            notes: "B's notes".into(),
            tags: vec!["depth".into(), "b".into()],
            status: Status::Hypothesis,
            confidence: Some(0.5),
            ..Annotation::default()
        },
    );
    a.annotations.insert(
        k,
        Annotation {
            label: "same".into(),
            ..Annotation::default()
        },
    );
    b.annotations.insert(
        k,
        Annotation {
            label: "same".into(),
            status: Status::Hypothesis,
            ..Annotation::default()
        },
    );
    b.annotations.insert(
        v,
        Annotation {
            label: "only in B".into(),
            ..Annotation::default()
        },
    );
    a.marks = vec![q];
    b.marks = vec![v, q];
    let m = session::merge(&a, &b, "alice.json", "bob.json").unwrap();
    assert_eq!(m.annotations[&q].conflict.len(), 2);
    assert!(m.annotations[&k].conflict.is_empty());
    golden("merged.json", &m.to_json());
    // Resolving keeps the chosen label and clears the conflict.
    let mut r = m.annotations[&q].clone();
    assert!(r.resolve(1));
    assert_eq!(r.label, "list-end detector");
    assert!(r.conflict.is_empty());
    // Sessions of two models do not merge.
    let other = fixed_session("other");
    assert!(session::merge(&a, &other, "a", "b").is_err());
}

/// The writer of the crash test: saves bigger and bigger self-checking sessions until killed.
#[test]
#[ignore]
fn crash_writer_child() {
    let Ok(path) = std::env::var("CS_WRITER_PATH") else {
        return;
    };
    let path = PathBuf::from(path);
    let _lock = SessionLock::acquire(&path).expect("the previous writer's lock is stale");
    let mut s = fixed_session("fp");
    for i in 0u64.. {
        let body = "x".repeat(100_000 + (i as usize % 7) * 10_000);
        s.annotations.insert(
            node("1.attn.q[62]"),
            Annotation {
                label: format!("{i}:{}", body.len()),
                notes: body,
                ..Annotation::default()
            },
        );
        store::save(&path, &s).unwrap();
    }
}

#[test]
fn a_writer_killed_mid_save_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.json");
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_f491_u64;
    let mut seen = 0;
    for round in 0..16 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "session::crash_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CS_WRITER_PATH", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(40 + seed % 120));
        child.kill().unwrap();
        child.wait().unwrap();
        let Some(s) = store::load(&path).unwrap_or_else(|e| panic!("round {round}: {e}")) else {
            continue;
        };
        let a = &s.annotations[&node("1.attn.q[62]")];
        let (_, len) = a.label.split_once(':').unwrap();
        assert_eq!(
            len.parse::<usize>().unwrap(),
            a.notes.len(),
            "round {round}: a torn file"
        );
        seen += 1;
    }
    assert!(
        seen >= 8,
        "the writer wrote too rarely ({seen} rounds); stale locks not taken over?"
    );
}

#[test]
fn quitting_right_after_an_edit_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quit.json");
    let target = node("1.attn.q[62]");
    {
        let tui::Loaded {
            mut app, mut engine, ..
        } = open_session(&path).unwrap();
        tui::pump(&mut app, &mut engine);
        command(&mut app, &mut engine, &format!("goto {target}"));
        command(&mut app, &mut engine, "label first");
        // No tick has come: nothing was written while the keys came in.
        assert!(!path.exists(), "written on the input path");
        tui::update(&mut app, Msg::Tick);
        app.wait_for_saves();
        assert_eq!(store::load(&path).unwrap().unwrap().annotations[&target].label, "first");
        // The last edit, then `q` at once: no tick in between.
        command(&mut app, &mut engine, "label last");
        send(&mut app, &mut engine, [Msg::ch('q')]);
        assert!(app.quit);
    }
    let s = store::load(&path).unwrap().unwrap();
    assert_eq!(
        s.annotations[&target].label, "last",
        "the edit before quitting was lost"
    );
    // The lock went with the app: the file opens writable again.
    let l = open_session(&path).unwrap();
    assert!(l.app.session.as_ref().unwrap().read_only.is_none());
}

/// The child of the UI-writer crash test: edits a session through the app, pausing (a tick) after each edit so
/// that the writer thread saves it, until killed. Each label says how long its notes are, so a torn file shows.
#[test]
#[ignore]
fn app_writer_child() {
    let Ok(path) = std::env::var("CS_APP_WRITER_PATH") else {
        return;
    };
    let tui::Loaded {
        mut app, mut engine, ..
    } = open_session(Path::new(&path)).unwrap();
    tui::pump(&mut app, &mut engine);
    let target = node("1.attn.q[62]");
    println!("ready");
    for i in 0u64.. {
        let body = "y".repeat(50_000 + (i as usize % 5) * 20_000);
        let a = app.annotations.entry(target).or_default();
        a.label = format!("{i}:{}", body.len());
        a.notes = body;
        // Any message marks the session dirty; the tick hands it to the writer.
        tui::update(&mut app, Msg::Resize(120, 40));
        tui::update(&mut app, Msg::Tick);
        if i % 4 == 0 {
            app.wait_for_saves();
        }
    }
}

#[test]
fn the_app_killed_while_its_writer_saves_leaves_a_whole_file() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app-crash.json");
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_u64;
    let mut seen = 0;
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "session::app_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CS_APP_WRITER_PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the model to load, so that the kill lands among the writes.
        let stdout = child.stdout.take().unwrap();
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("ready"));
        assert!(ready, "round {round}: the child never got ready");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(30 + seed % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        let Some(s) = store::load(&path).unwrap_or_else(|e| panic!("round {round}: {e}")) else {
            continue;
        };
        let a = &s.annotations[&node("1.attn.q[62]")];
        let (_, len) = a.label.split_once(':').unwrap();
        assert_eq!(
            len.parse::<usize>().unwrap(),
            a.notes.len(),
            "round {round}: a torn file"
        );
        seen += 1;
    }
    assert!(seen >= 3, "the app's writer wrote too rarely ({seen} rounds)");
}

#[test]
fn bad_sessions_are_clear_messages_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let circuit = CircuitFile::load(&circuit_path()).unwrap();
    let fp = circuit.model.fingerprint.clone();
    let one_line = |m: &str| assert_eq!(m.trim().lines().count(), 1, "{m}");

    // Corrupt JSON: refused, file untouched.
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{ \"format_version\": 1, \"model\": ").unwrap();
    let e = open_session(&corrupt).err().expect("refused").to_string();
    assert!(e.contains("not a valid session file"), "{e}");
    one_line(&e);
    assert_eq!(
        std::fs::read_to_string(&corrupt).unwrap(),
        "{ \"format_version\": 1, \"model\": "
    );
    assert!(!SessionLock::lock_path(&corrupt).exists(), "the lock is released");

    // A node id that does not parse is corrupt too.
    let bad_id = dir.path().join("bad_id.json");
    let mut s = fixed_session(&fp);
    s.annotations.insert(node("1.attn.q[62]"), Annotation::default());
    let text = s.to_json().replace("1.attn.q[62]", "1.attn.zz[62]");
    std::fs::write(&bad_id, &text).unwrap();
    let e = open_session(&bad_id).err().expect("refused").to_string();
    one_line(&e);
    assert_eq!(std::fs::read_to_string(&bad_id).unwrap(), text);

    // Another model, then a newer version: read-only, with the reason; edits are never written.
    for (name, edit) in [
        (
            "other.json",
            Box::new(|s: &mut Session| s.model.fingerprint = "0123456789abcdef".into()) as Box<dyn Fn(&mut Session)>,
        ),
        ("newer.json", Box::new(|s: &mut Session| s.format_version = 99)),
    ] {
        let p = dir.path().join(name);
        let mut s = fixed_session(&fp);
        s.annotations.insert(
            node("1.attn.q[62]"),
            Annotation {
                label: "kept".into(),
                ..Annotation::default()
            },
        );
        edit(&mut s);
        let text = s.to_json();
        std::fs::write(&p, &text).unwrap();
        let tui::Loaded {
            mut app,
            mut engine,
            warnings,
        } = open_session(&p).unwrap();
        let ro = app.session.as_ref().unwrap().read_only.clone().expect("read-only");
        one_line(&ro);
        assert!(
            ro.contains(if name == "other.json" {
                "was made for model"
            } else {
                "format version 99"
            }),
            "{ro}"
        );
        assert!(warnings.iter().any(|w| w == &ro));
        tui::pump(&mut app, &mut engine);
        command(&mut app, &mut engine, "label changed");
        command(&mut app, &mut engine, "save");
        assert!(app.status.contains("read-only"), "{}", app.status);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "{name} was overwritten");
    }

    // Nodes that are not in the circuit: a warning, and their annotations survive a save.
    let unknown = dir.path().join("unknown.json");
    let mut s = fixed_session(&fp);
    s.annotations.insert(
        node("0.attn.q[3]"),
        Annotation {
            label: "elsewhere".into(),
            ..Annotation::default()
        },
    );
    store::save(&unknown, &s).unwrap();
    {
        let tui::Loaded {
            mut app,
            mut engine,
            warnings,
        } = open_session(&unknown).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("not in this circuit") && w.contains("0.attn.q[3]")),
            "{warnings:?}"
        );
        tui::pump(&mut app, &mut engine);
        command(&mut app, &mut engine, "label here");
    }
    let s = store::load(&unknown).unwrap().unwrap();
    assert_eq!(s.annotations[&node("0.attn.q[3]")].label, "elsewhere");

    // A held lock: read-only; a lock file left by a dead process (no OS lock on it) is taken over.
    let locked = dir.path().join("locked.json");
    let held = SessionLock::acquire(&locked).unwrap();
    let l = open_session(&locked).unwrap();
    assert!(l
        .app
        .session
        .as_ref()
        .unwrap()
        .read_only
        .as_deref()
        .unwrap_or("")
        .contains("in use by process"));
    drop(l);
    drop(held);
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(SessionLock::lock_path(&locked), format!("{dead_pid}\n")).unwrap();
    let l = open_session(&locked).unwrap();
    assert!(l.app.session.as_ref().unwrap().read_only.is_none());
    assert!(matches!(
        SessionLock::acquire(&locked),
        Err(SessionError::Locked { .. })
    ));
}

#[test]
fn cli_export_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let circuit = CircuitFile::load(&circuit_path()).unwrap();
    let mut s = nasty_session(&circuit.model.fingerprint);
    s.circuit.path = circuit_path().display().to_string();
    s.model.path = Some(root().join("assets/models/tinypython-sparse").display().to_string());
    let a = dir.path().join("a.json");
    store::save(&a, &s).unwrap();
    let bin = env!("CARGO_BIN_EXE_circuitscope");
    let out = Command::new(bin)
        .args(["export"])
        .arg(&a)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "format_version",
        "model",
        "task",
        "circuit",
        "summary",
        "nodes",
        "edges",
    ] {
        assert!(v.get(key).is_some(), "--json has no `{key}`");
    }
    // With the bundled scan, labeled nodes get exemplars.
    let q = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "1.attn.q[62]")
        .unwrap();
    assert!(!q["exemplars"].as_array().unwrap().is_empty());
    let md = dir.path().join("r.md");
    let out = Command::new(bin)
        .arg("export")
        .arg(&a)
        .arg("-o")
        .arg(&md)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&md).unwrap().contains("```mermaid"));

    let b = dir.path().join("b.json");
    let mut sb = s.clone();
    sb.annotations.get_mut(&node("1.attn.q[62]")).unwrap().label = "another label".into();
    store::save(&b, &sb).unwrap();
    let c = dir.path().join("c.json");
    let out = Command::new(bin)
        .args(["session", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&c)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = store::load(&c).unwrap().unwrap();
    assert_eq!(m.annotations[&node("1.attn.q[62]")].conflict.len(), 2);
    // Bad input: a corrupt session is one line and a non-zero exit.
    std::fs::write(&b, "not json").unwrap();
    let out = Command::new(bin).arg("export").arg(&b).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The committed example session opened on the bundled circuit it was written for.
fn open_example(path: &Path) -> tui::Loaded {
    let opts = OpenOptions {
        model: root().join("assets/models/tinypython-sparse"),
        circuit: Some(root().join("assets/circuits/tinypython-sparse/bracket_counting.json")),
        task: "bracket_counting".into(),
        session: Some(path.to_path_buf()),
        sae: None,
    };
    tui::load(&opts, Theme::new(ColorMode::TrueColor)).expect("the example session opens")
}

#[test]
fn opening_a_session_writes_nothing_until_the_user_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.json");
    let original = std::fs::read_to_string(root().join("sessions/example.json")).unwrap();
    std::fs::write(&path, &original).unwrap();
    {
        let tui::Loaded {
            mut app, mut engine, ..
        } = open_example(&path);
        assert!(app.session.as_ref().unwrap().read_only.is_none());
        tui::pump(&mut app, &mut engine);
        // Looking around: screens, the lab's runs, ticks, quitting.
        for key in ['2', '3', '4', '5', '6', '1'] {
            send(&mut app, &mut engine, [Msg::ch(key), Msg::Tick]);
        }
        app.wait_for_saves();
        send(&mut app, &mut engine, [Msg::ch('q')]);
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "opening and looking rewrote the session"
    );
    // A change the user made is written, and the marks keep their order.
    let before = store::load(&path).unwrap().unwrap();
    {
        let tui::Loaded {
            mut app, mut engine, ..
        } = open_example(&path);
        tui::pump(&mut app, &mut engine);
        command(&mut app, &mut engine, "label changed");
        tui::update(&mut app, Msg::Tick);
        app.wait_for_saves();
    }
    let after = store::load(&path).unwrap().unwrap();
    assert_eq!(after.marks, before.marks);
    assert_ne!(std::fs::read_to_string(&path).unwrap(), original);
    let cursor = before.cursor.unwrap();
    assert_eq!(after.annotations[&cursor].label, "changed");
    // A new session is not written by opening it either (the first run is a baseline, not a pin).
    let fresh = dir.path().join("fresh.json");
    {
        let tui::Loaded {
            mut app, mut engine, ..
        } = open_session(&fresh).unwrap();
        tui::pump(&mut app, &mut engine);
        send(&mut app, &mut engine, [Msg::ch('3'), Msg::Tick]);
        app.wait_for_saves();
    }
    assert!(!fresh.exists(), "opening a new session wrote it");
}

#[test]
fn a_read_only_instance_says_its_changes_are_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.json");
    let first = open_session(&path).unwrap();
    assert!(first.app.session.as_ref().unwrap().read_only.is_none());
    // The first instance holds the lock: the second opens read-only.
    let tui::Loaded {
        mut app, mut engine, ..
    } = open_session(&path).unwrap();
    assert!(app.session.as_ref().unwrap().read_only.is_some());
    tui::pump(&mut app, &mut engine);
    for line in ["label x", "status supported", "evidence", "keep probe"] {
        command(&mut app, &mut engine, line);
        assert!(app.status.contains("read-only"), "`:{line}` answered {:?}", app.status);
    }
    send(&mut app, &mut engine, [Msg::ch('m')]);
    assert!(app.status.contains("read-only"), "{}", app.status);
    // A writable instance answers as before.
    let tui::Loaded {
        app: mut writable,
        engine: mut e2,
        ..
    } = first;
    tui::pump(&mut writable, &mut e2);
    command(&mut writable, &mut e2, "label y");
    assert!(!writable.status.contains("read-only"), "{}", writable.status);
}

#[test]
fn kept_prompts_with_their_logit_differences_and_the_summary_go_into_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let tui::Loaded {
        mut app, mut engine, ..
    } = open_session(&path).unwrap();
    tui::pump(&mut app, &mut engine);
    let ld = app
        .lab
        .run
        .as_ref()
        .unwrap()
        .logit_diff()
        .expect("bracket_counting has targets");
    command(&mut app, &mut engine, "keep deep | one");
    assert!(app.status.contains(&format!("{ld:+.3}")), "{}", app.status);
    command(&mut app, &mut engine, "ablate 1.attn.q[62] mean");
    let ld_ablated = app.lab.run.as_ref().unwrap().logit_diff().unwrap();
    command(&mut app, &mut engine, "keep");
    // The summary, written in the tool; `:summary` alone opens it for editing.
    command(&mut app, &mut engine, "summary Depth is counted.\\nThen read out.");
    command(&mut app, &mut engine, "summary");
    assert_eq!(app.command, "summary Depth is counted.\\nThen read out.");
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc)]);
    command(&mut app, &mut engine, "save");
    let s = store::load(&path).unwrap().unwrap();
    assert_eq!(s.summary, "Depth is counted.\nThen read out.");
    assert_eq!(s.saved_prompts.len(), 2);
    assert_eq!(s.saved_prompts[0].logit_diff, Some(ld));
    assert!(s.saved_prompts[0].ablations.is_empty());
    assert_eq!(s.saved_prompts[1].logit_diff, Some(ld_ablated));
    assert_eq!(s.saved_prompts[1].ablations[0].node, node("1.attn.q[62]"));
    let md = dir.path().join("r.md");
    command(&mut app, &mut engine, &format!("export {}", md.display()));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Mechanism\n\nDepth is counted.<br>Then read out."),
        "{text}"
    );
    assert!(text.contains("## Kept prompts"), "{text}");
    assert!(text.contains("| deep \\| one | "), "{text}");
    assert!(text.contains(&format!("| {ld:+.3} | none |")), "{text}");
    assert!(
        text.contains(&format!("| {ld_ablated:+.3} | `1.attn.q[62]` mean |")),
        "{text}"
    );
    // And in the JSON report.
    let circuit = circuitscope::circuit::CircuitFile::load(&circuit_path()).unwrap();
    let v = export::json(&ReportInput {
        session: &s,
        circuit: &circuit,
        exemplars: BTreeMap::new(),
        top_k: 0,
    });
    assert_eq!(v["kept_prompts"][0]["name"], "deep | one");
    assert!((v["kept_prompts"][0]["logit_diff"].as_f64().unwrap() - ld as f64).abs() < 1e-6);
    assert_eq!(v["kept_prompts"][1]["ablations"][0]["node"], "1.attn.q[62]");
    // `:summary!` clears it (`:summary` alone would only open it for editing).
    command(&mut app, &mut engine, "summary!");
    assert_eq!(app.status, "summary cleared");
    command(&mut app, &mut engine, "save");
    assert_eq!(store::load(&path).unwrap().unwrap().summary, "");
}

#[test]
fn goto_and_ablate_take_transformer_lens_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let tui::Loaded {
        mut app, mut engine, ..
    } = open_session(&dir.path().join("s.json")).unwrap();
    tui::pump(&mut app, &mut engine);
    // The bundled sparse model has heads of 16 channels: head 3, channel 14 is channel 62.
    command(&mut app, &mut engine, "goto blocks.1.attn.hook_q[3:14]");
    assert_eq!(app.selected, Some(node("1.attn.q[62]")), "{}", app.status);
    command(&mut app, &mut engine, "goto blocks.1.hook_resid_pre[3]");
    assert!(app.status.contains("holds no circuit nodes"), "{}", app.status);
}

/// The `explanation` evidence kind and the Attribution pins came with format version 2: a session that uses them is
/// written as version 2
/// (so an older build refuses it as "newer" instead of failing on an unknown kind), one that does not stays
/// version 1, the version is never lowered, and a version beyond this build's is refused.
#[test]
fn sessions_are_written_in_the_oldest_format_that_holds_them() {
    let version = |s: &Session| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        v["format_version"].as_u64().unwrap()
    };
    let mut s = fixed_session("fp");
    assert_eq!(version(&s), u64::from(session::SESSION_FORMAT_BASE_VERSION));

    let node = node("1.attn.q[62]");
    s.annotations.insert(
        node,
        Annotation {
            label: "fires on \"[[\"".into(),
            evidence: vec![Evidence::Explanation {
                text: "fires on \"[[\"".into(),
                correlation: Some(0.9),
                precision: None,
                recall: None,
            }],
            ..Annotation::default()
        },
    );
    assert_eq!(version(&s), 2);
    let back = Session::from_json(&s.to_json(), "s.json").unwrap();
    assert_eq!(back.format_version, 2);
    assert_eq!(back.annotations, s.annotations);

    // A session read as version 2 stays version 2 after the explanation is gone (never lowered).
    let mut back = back;
    back.annotations.clear();
    assert_eq!(version(&back), 2);
    // The Attribution screen's pins are version 2 too: a version-1 build would drop them on its next save.
    let mut pinned = fixed_session("fp");
    pinned.attribution.prompt = "x = [[1".into();
    pinned.attribution.pinned.push("1.mlp.post_act[3]@2".into());
    assert_eq!(version(&pinned), 2);

    let mut newer: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    newer["format_version"] = serde_json::json!(session::SESSION_FORMAT_VERSION + 1);
    let e = Session::from_json(&newer.to_string(), "s.json").unwrap_err();
    assert!(matches!(e, SessionError::NewerVersion { found: 3, .. }), "{e}");
}
