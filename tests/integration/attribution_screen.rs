//! The workbench's Attribution screen (tab 9) on the bundled sparse model: snapshots at 80x24 and 120x40, the
//! keys (walk an edge, threshold, open the channel), pins and a supernode kept in the session across a reopen,
//! the mermaid block of the markdown export, bad supernode names, and `attribute --session` labels.

use std::path::{Path, PathBuf};

use circuitscope::circuit::PositionedNode;
use circuitscope::session::{store, Annotation, AttributionPins, CircuitRef, Session, SessionModel, Supernode};
use circuitscope::tui::{self, update, App, ColorMode, Engine, Msg, OpenOptions, Screen, Theme};
use circuitscope::workbench::{AttrTarget, AttributionView, Reply, Request};
use ratatui::crossterm::event::KeyCode;

use super::common::{cli, cli_err, draw, screen_text, send};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_dir() -> PathBuf {
    root().join("assets/models/tinypython-sparse")
}

fn open(session: Option<&Path>) -> (App, Engine) {
    let opts = OpenOptions {
        model: model_dir(),
        circuit: Some(root().join("tests/fixtures/tui/bracket_counting.json")),
        task: "bracket_counting".into(),
        session: session.map(Path::to_path_buf),
        sae: None,
    };
    let l = tui::load(&opts, Theme::new(ColorMode::TrueColor)).expect("the fixture opens");
    let (mut app, mut engine) = (l.app, l.engine);
    app.show_timing = false;
    tui::pump(&mut app, &mut engine);
    (app, engine)
}

fn command(app: &mut App, engine: &mut Engine, line: &str) {
    send(app, engine, [Msg::ch(':')]);
    send(app, engine, Msg::typed(line));
    send(app, engine, [Msg::key(KeyCode::Enter)]);
}

fn view(app: &App) -> &AttributionView {
    app.attribution.view.as_ref().expect("the graph arrived")
}

fn selected_id(app: &App) -> String {
    let v = view(app);
    v.nodes[app.attribution.selected.expect("a node is selected")]
        .id
        .clone()
}

/// `9` computes the graph of the lab's prompt on the task's logit difference; the grid, the side list and the
/// summary are drawn; the keys walk an edge, move the threshold (recomputing) and open the channel.
#[test]
fn the_screen_draws_the_pruned_graph_and_walks_its_edges() {
    let (mut app, mut engine) = open(None);
    send(&mut app, &mut engine, [Msg::ch('9')]);
    assert_eq!(app.screen, Screen::Attribution);
    assert!(!app.attribution.pending);
    let v = view(&app).clone();
    assert_eq!(v.text, app.prompt_text());
    assert!(v.target.contains('−'), "the task's logit difference: {}", v.target);
    assert!(v.nodes.len() > 2 && !v.edges.is_empty(), "{} nodes", v.nodes.len());
    assert!(v.nodes.len() < v.full.0 && v.edges.len() < v.full.1);
    assert!(v.completeness > 0.0 && v.completeness <= 1.0 + 1e-9);
    // Every kept edge runs forward, between kept nodes, and the logits sit in the last row.
    let last_row = v.nodes.iter().map(|n| n.row).max().unwrap();
    for e in &v.edges {
        assert!(v.nodes[e.source].row <= v.nodes[e.target].row);
    }
    assert!(v.nodes.iter().any(|n| n.row == last_row && n.id.starts_with("logit[")));
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        insta::assert_snapshot!(format!("attribution_{w}x{h}"), draw(&app, w, h).backend());
    }
    let text = screen_text(&draw(&app, 120, 40));
    for needle in ["9 Attr", "node thr 0.80", "completeness", "emb", "L0 mlp.post", "logit"] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }

    // Walk: the edge under the cursor leads to its other end.
    let before = app.attribution.selected.unwrap();
    let edges = circuitscope::tui::screens::attribution::selected_edges(&app);
    assert!(!edges.is_empty(), "the selected node has kept edges");
    let k = edges.len().min(2) - 1;
    for _ in 0..k {
        send(&mut app, &mut engine, [Msg::ch('J')]);
    }
    assert_eq!(app.attribution.edge_sel, k);
    let (incoming, other, _) = edges[k];
    send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.attribution.selected, Some(other));
    let (s, t) = if incoming { (other, before) } else { (before, other) };
    assert!(view(&app).edges.iter().any(|e| e.source == s && e.target == t));

    // A click on a cell selects its node.
    let _ = draw(&app, 120, 40);
    let (rect, clicked) = app
        .hits
        .borrow()
        .iter()
        .filter_map(|(r, h)| match h {
            tui::app::Hit::AttrNode(i) if Some(*i) != app.attribution.selected => Some((*r, *i)),
            _ => None,
        })
        .next()
        .expect("the grid's cells are clickable");
    let click = Msg::Mouse(ratatui::crossterm::event::MouseEvent {
        kind: ratatui::crossterm::event::MouseEventKind::Down(ratatui::crossterm::event::MouseButton::Left),
        column: rect.x,
        row: rect.y,
        modifiers: ratatui::crossterm::event::KeyModifiers::NONE,
    });
    send(&mut app, &mut engine, [click]);
    assert_eq!(app.attribution.selected, Some(clicked));

    // hjkl move the selection through the grid and stay on kept nodes.
    for c in ['j', 'l', 'k', 'h', 'n', 'N'] {
        send(&mut app, &mut engine, [Msg::ch(c)]);
        assert!(app.attribution.selected.unwrap() < view(&app).nodes.len());
    }

    // `>` raises the node threshold and the worker recomputes; the selection keeps its node when it can.
    let kept = view(&app).nodes.len();
    let id = selected_id(&app);
    send(&mut app, &mut engine, [Msg::ch('>')]);
    assert_eq!(view(&app).node_threshold, 0.85);
    assert!(view(&app).nodes.len() >= kept, "{} < {kept}", view(&app).nodes.len());
    assert_eq!(selected_id(&app), id);
    send(&mut app, &mut engine, [Msg::ch('<'), Msg::ch('<')]);
    assert_eq!(view(&app).node_threshold, 0.75);

    // An edited prompt is recomputed on entering the screen again.
    send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('e')]);
    send(&mut app, &mut engine, Msg::typed(" x"));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc), Msg::ch('9')]);
    assert_eq!(view(&app).text, app.prompt_text());

    // `g` opens a channel node on the map or in the inspector.
    let ch = view(&app).nodes.iter().position(|n| n.channel.is_some()).unwrap();
    app.attribution.selected = Some(ch);
    let node = view(&app).nodes[ch].channel.unwrap();
    send(&mut app, &mut engine, [Msg::ch('g')]);
    assert_eq!(app.selected, Some(node));
    assert!(matches!(app.screen, Screen::Map | Screen::Inspector));
}

/// Pin two nodes, group them (bad names refused with a message), save, reopen: the pins and the supernode are
/// back; the markdown export draws them as a mermaid subgraph.
#[test]
fn pins_and_supernodes_survive_a_reopen_and_reach_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let (pinned, prompt) = {
        let (mut app, mut engine) = open(Some(&path));
        send(&mut app, &mut engine, [Msg::ch('9')]);
        // `s` with nothing pinned says so.
        send(&mut app, &mut engine, [Msg::ch('s')]);
        assert!(app.status.contains("no pinned nodes"), "{}", app.status);
        let a = selected_id(&app);
        send(&mut app, &mut engine, [Msg::ch('p')]);
        send(&mut app, &mut engine, [Msg::ch('J'), Msg::key(KeyCode::Enter)]);
        let b = selected_id(&app);
        assert_ne!(a, b);
        send(&mut app, &mut engine, [Msg::ch('p')]);
        assert_eq!(app.attribution.pins.pinned, vec![a.clone(), b.clone()]);
        // The two are joined by the walked edge, which the pins keep.
        assert_eq!(app.attribution.pins.edges.len(), 1, "{:?}", app.attribution.pins.edges);
        // `s` opens the command line on `:supernode `.
        send(&mut app, &mut engine, [Msg::ch('s')]);
        assert_eq!(app.command, "supernode ");
        send(&mut app, &mut engine, Msg::typed("depth readers\n"));
        assert!(app.status.contains("supernode `depth readers`"), "{}", app.status);
        // Bad names: empty, duplicate. One line each, nothing changes.
        command(&mut app, &mut engine, "supernode   ");
        assert!(app.status.contains("needs a name"), "{}", app.status);
        command(&mut app, &mut engine, "supernode depth readers");
        assert!(app.status.contains("already named `depth readers`"), "{}", app.status);
        assert_eq!(app.attribution.pins.supernodes.len(), 1);
        // The report, written by the engine.
        let md = dir.path().join("r.md");
        command(&mut app, &mut engine, &format!("export {}", md.display()));
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.contains("## Attribution graph: pinned nodes"), "{text}");
        let block = text
            .split("```mermaid\nflowchart BT\n")
            .nth(1)
            .expect("the pins' mermaid block");
        let block = block.split("```").next().unwrap();
        assert!(block.contains("subgraph s0[\"depth readers\"]"), "{block}");
        assert!(block.contains(&a) && block.contains(&b), "{block}");
        assert_eq!(block.matches("-->").count(), 1, "{block}");
        update(&mut app, Msg::Tick);
        app.wait_for_saves();
        (vec![a, b], app.prompt_text())
    };
    let s = store::load(&path).unwrap().unwrap();
    assert_eq!(s.attribution.pinned, pinned);
    assert_eq!(s.attribution.prompt, prompt);
    assert_eq!(
        s.attribution.supernodes,
        vec![Supernode {
            name: "depth readers".into(),
            nodes: pinned.clone()
        }]
    );
    let (mut app, mut engine) = open(Some(&path));
    assert_eq!(app.attribution.pins.pinned, pinned);
    assert_eq!(app.attribution.pins.supernodes[0].name, "depth readers");
    // `:unpin` clears them.
    command(&mut app, &mut engine, "unpin");
    assert!(app.attribution.pins.is_empty());
}

/// Sessions without pins keep their old bytes (no `attribution` key) and older files load with none.
#[test]
fn sessions_without_pins_are_unchanged_and_old_ones_load() {
    let s = Session::new(
        SessionModel {
            fingerprint: "fp".into(),
            name: None,
            path: None,
        },
        CircuitRef::default(),
    );
    let json = s.to_json();
    assert!(!json.contains("attribution"), "{json}");
    let back = Session::from_json(&json, "s.json").unwrap();
    assert!(back.attribution.is_empty());
    let mut with = s.clone();
    with.attribution = AttributionPins {
        prompt: "x = (".into(),
        pinned: vec!["0.mlp.post_act[3]@1".into(), "embed@0".into()],
        supernodes: vec![Supernode {
            name: "g".into(),
            nodes: vec!["embed@0".into()],
        }],
        edges: vec![],
    };
    let back = Session::from_json(&with.to_json(), "s.json").unwrap();
    assert_eq!(back.attribution, with.attribution);
}

/// `attribute --session` labels the exported nodes from the session and passes its pins on this prompt as
/// qParams; a missing session file is a one-line error.
#[test]
fn attribute_with_a_session_labels_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_dir();
    let m = m.to_str().unwrap();
    let prompt = "x = [[1, 2], [3";
    let g1 = dir.path().join("g1.json");
    let out = cli(&[
        "attribute",
        "--model",
        m,
        "--prompt",
        prompt,
        "-o",
        g1.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.ok, "{}", out.stderr);
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g1).unwrap()).unwrap();
    let id = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_string())
        .find(|id| id.parse::<PositionedNode>().is_ok())
        .expect("a channel node");
    let channel = id.parse::<PositionedNode>().unwrap().node;
    let mut s = Session::new(SessionModel::default(), CircuitRef::default());
    s.annotations.insert(
        channel,
        Annotation {
            label: "bracket depth".into(),
            ..Annotation::default()
        },
    );
    s.attribution = AttributionPins {
        prompt: prompt.into(),
        pinned: vec![id.clone(), "7.mlp.post_act[0]@99".into()],
        supernodes: vec![Supernode {
            name: "depth".into(),
            nodes: vec![id.clone()],
        }],
        edges: vec![],
    };
    let session = dir.path().join("s.json");
    store::save(&session, &s).unwrap();
    let g2 = dir.path().join("g2.json");
    let out = cli(&[
        "attribute",
        "--model",
        m,
        "--prompt",
        prompt,
        "--session",
        session.to_str().unwrap(),
        "-o",
        g2.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g2).unwrap()).unwrap();
    let node = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id.as_str())
        .unwrap();
    assert_eq!(node["clerp"], "bracket depth");
    // Pins the graph lacks are left out; the file still reads back.
    assert_eq!(file["qParams"]["pinnedIds"], serde_json::json!([id]));
    assert_eq!(file["qParams"]["supernodes"], serde_json::json!([["depth", id]]));
    let back = cli(&["attribute", "show", g2.to_str().unwrap(), "--json"]);
    assert!(back.ok, "{}", back.stderr);
    cli_err(
        &[
            "attribute",
            "--model",
            m,
            "--prompt",
            prompt,
            "--session",
            "/nonexistent/s.json",
        ],
        &["/nonexistent/s.json"],
    );
}

/// Requests the engine cannot answer fail with one line; in the UI the screen and the status line say why, and
/// the next prompt is computed again.
#[test]
fn bad_requests_fail_with_one_line_and_the_next_prompt_recovers() {
    let (mut app, mut engine) = open(None);
    let ask = |engine: &mut Engine, text: &str, target: AttrTarget, node_threshold: f32| match engine.handle(
        Request::Attribute {
            text: text.into(),
            target,
            node_threshold,
            edge_threshold: 0.98,
        },
    ) {
        Reply::AttributionFailed(m) => m,
        r => panic!("expected a failure: {r:?}"),
    };
    let text = app.prompt_text();
    let m = ask(&mut engine, &text, AttrTarget::TopLogit, 1.5);
    assert!(m.contains("1.5") && !m.contains('\n'), "{m}");
    assert!(ask(&mut engine, "", AttrTarget::TopLogit, 0.8).contains("empty"));
    engine.set_task("no_such_task");
    assert!(ask(&mut engine, &text, AttrTarget::TaskPair, 0.8).contains("no single-token target pair"));
    engine.set_task("bracket_counting");

    // An empty lab prompt: the screen says why there is no graph; no panic.
    send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('e')]);
    send(
        &mut app,
        &mut engine,
        (0..text.chars().count() + 8).map(|_| Msg::key(KeyCode::Backspace)),
    );
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc)]);
    assert_eq!(app.prompt_text(), "");
    send(&mut app, &mut engine, [Msg::ch('9')]);
    assert!(app.attribution.view.is_none());
    assert!(app.status.contains("empty"), "{}", app.status);
    let screen = screen_text(&draw(&app, 80, 24));
    assert!(screen.contains("no graph: the prompt is empty"), "{screen}");
    // A prompt again: entering the screen computes it.
    send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('e')]);
    send(&mut app, &mut engine, Msg::typed("x = [[1"));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc), Msg::ch('9')]);
    assert_eq!(view(&app).text, "x = [[1");
}

/// `attribute import` brings a shared graph's prompt, pins and supernodes into a session, idempotently; the
/// workbench then opens on them. Files not made here, sessions with pins on another prompt and missing sessions
/// are one-line errors that leave the session as it was.
#[test]
fn a_graph_file_imports_into_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_dir();
    let m = m.to_str().unwrap();
    let prompt = "x = [[1, 2], [3";
    let g1 = dir.path().join("g1.json");
    assert!(
        cli(&[
            "attribute",
            "--model",
            m,
            "--prompt",
            prompt,
            "-o",
            g1.to_str().unwrap()
        ])
        .ok
    );
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&g1).unwrap()).unwrap();
    let ids: Vec<String> = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_string())
        .filter(|id| id.parse::<PositionedNode>().is_ok())
        .take(2)
        .collect();
    assert_eq!(ids.len(), 2);
    // Another analyst's session pins two nodes and groups one; their export carries them as qParams.
    let mut theirs = Session::new(SessionModel::default(), CircuitRef::default());
    theirs.attribution = AttributionPins {
        prompt: prompt.into(),
        pinned: ids.clone(),
        supernodes: vec![Supernode {
            name: "depth".into(),
            nodes: vec![ids[0].clone()],
        }],
        edges: vec![],
    };
    let their_session = dir.path().join("theirs.json");
    store::save(&their_session, &theirs).unwrap();
    let shared = dir.path().join("shared.json");
    let out = cli(&[
        "attribute",
        "--model",
        m,
        "--prompt",
        prompt,
        "--session",
        their_session.to_str().unwrap(),
        "-o",
        shared.to_str().unwrap(),
    ]);
    assert!(out.ok, "{}", out.stderr);

    // My session of the same model, with a supernode of the same name but other nodes.
    let files = circuitscope::model::ModelFiles::locate(&model_dir()).unwrap();
    let cfg = files.load_config().unwrap().config;
    let fingerprint = circuitscope::circuit::model_fingerprint(&files.open_checkpoint(&cfg).unwrap(), &cfg).unwrap();
    let mut mine = Session::new(
        SessionModel {
            fingerprint,
            name: None,
            path: Some(m.to_string()),
        },
        CircuitRef::default(),
    );
    mine.attribution.supernodes.push(Supernode {
        name: "depth".into(),
        nodes: vec![ids[1].clone()],
    });
    mine.attribution.prompt = prompt.into();
    let my_session = dir.path().join("mine.json");
    store::save(&my_session, &mine).unwrap();
    let import = || {
        let out = cli(&[
            "attribute",
            "import",
            shared.to_str().unwrap(),
            "--session",
            my_session.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.ok, "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = import();
    assert_eq!(
        (v["pinned_added"].as_u64(), v["supernodes_added"].as_u64()),
        (Some(2), Some(1))
    );
    let s = store::load(&my_session).unwrap().unwrap();
    assert_eq!(s.prompt, prompt);
    assert_eq!(s.attribution.pinned, ids);
    let names: Vec<&str> = s.attribution.supernodes.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["depth", "depth (imported)"]);
    // Importing again adds nothing.
    let v = import();
    assert_eq!(
        (v["pinned_added"].as_u64(), v["supernodes_added"].as_u64()),
        (Some(0), Some(0))
    );

    // The workbench opens on the graph's prompt with the pins.
    let (app, _engine) = open(Some(&my_session));
    assert_eq!(app.prompt_text(), prompt);
    assert_eq!(app.attribution.pins.pinned, ids);
    drop(app);

    // Errors leave the session's bytes as they were.
    let before = std::fs::read(&my_session).unwrap();
    let mut other = file.clone();
    other["metadata"]["prompt"] = "y = 1".into();
    let other_path = dir.path().join("other.json");
    std::fs::write(&other_path, serde_json::to_vec(&other).unwrap()).unwrap();
    let s_arg = my_session.to_str().unwrap();
    cli_err(
        &["attribute", "import", other_path.to_str().unwrap(), "--session", s_arg],
        &["other.json", "tokens here"],
    );
    other["metadata"].as_object_mut().unwrap().remove("circuitscope");
    std::fs::write(&other_path, serde_json::to_vec(&other).unwrap()).unwrap();
    cli_err(
        &["attribute", "import", other_path.to_str().unwrap(), "--session", s_arg],
        &["not written by circuitscope"],
    );
    let g3 = dir.path().join("g3.json");
    assert!(
        cli(&[
            "attribute",
            "--model",
            m,
            "--prompt",
            "y = (1",
            "-o",
            g3.to_str().unwrap()
        ])
        .ok
    );
    cli_err(
        &["attribute", "import", g3.to_str().unwrap(), "--session", s_arg],
        &["already has pins on another prompt"],
    );
    assert_eq!(std::fs::read(&my_session).unwrap(), before);
    cli_err(
        &[
            "attribute",
            "import",
            shared.to_str().unwrap(),
            "--session",
            "/nonexistent/s.json",
        ],
        &["/nonexistent/s.json"],
    );
}
