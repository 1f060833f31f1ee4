//! The workbench: snapshots of every screen (120x40 and 80x24) with meaningful colours pinned, scripted key
//! sequences fed to `update` with the engine run synchronously, and bad input.
//!
//! The circuit is tests/fixtures/tui/bracket_counting.json: real nodes of the bundled tinypython-sparse model
//! (the channels that differ most between the two classes of bracket_counting at the last token), with losses
//! measured by zero-ablation. `cargo test --test integration tui::make_fixture -- --ignored` rebuilds it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{draw, screen_text, send};
use circuitscope::circuit::{
    model_fingerprint, BlockId, BlockLoss, CircuitFile, CircuitNode, Exemplar, Losses, ModelRef, NodeId,
    QuantileExemplars, Site,
};
use circuitscope::data::tasks::{self, contrast_loss, Split};
use circuitscope::model::{Action, Checkpoint, Config, Gpt, Hooks, Intervention, LoadOptions, ModelFiles};
use circuitscope::tokenize::Tokenizer;
use circuitscope::tui::{self, App, ColorMode, Engine, Msg, OpenOptions, Screen, Theme, TuiError};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;
use ratatui::Terminal;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_dir() -> PathBuf {
    root().join("assets/models/tinypython-sparse")
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/tui/bracket_counting.json")
}

fn open_with(circuit: PathBuf) -> Result<tui::Loaded, TuiError> {
    let opts = OpenOptions {
        model: model_dir(),
        circuit: Some(circuit),
        task: "bracket_counting".into(),
        session: None,
        sae: None,
    };
    tui::load(&opts, Theme::new(ColorMode::TrueColor))
}

/// The fixture opened, its first run done, timings hidden (snapshots must not change run to run).
fn open() -> (App, Engine) {
    let l = open_with(fixture()).expect("the fixture opens");
    let (mut app, mut engine) = (l.app, l.engine);
    app.debounce = std::time::Duration::ZERO;
    app.show_timing = false;
    tui::pump(&mut app, &mut engine);
    (app, engine)
}

/// The first cell whose line contains `needle`, as (x, y) of the needle's first character.
fn find(t: &Terminal<TestBackend>, needle: &str) -> Option<(u16, u16)> {
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let mut line = String::new();
        let mut xs = Vec::new();
        for x in 0..buf.area.width {
            let sym = buf[(x, y)].symbol();
            for _ in sym.chars() {
                xs.push(x);
            }
            line.push_str(sym);
        }
        if let Some(i) = line.find(needle) {
            let ci = line[..i].chars().count();
            return Some((xs[ci], y));
        }
    }
    None
}

#[test]
fn snapshots_of_every_screen() {
    let (mut app, mut engine) = open();
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        for (key, name) in [('1', "map"), ('2', "inspector"), ('3', "lab")] {
            send(&mut app, &mut engine, [Msg::ch(key)]);
            let t = draw(&app, w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
        }
        send(&mut app, &mut engine, [Msg::ch('1'), Msg::ch('?')]);
        insta::assert_snapshot!(format!("help_{w}x{h}"), draw(&app, w, h).backend());
        send(&mut app, &mut engine, [Msg::key(KeyCode::Esc)]);
    }
    // The notes view, with two annotations to list.
    send(&mut app, &mut engine, [Msg::ch('1')]);
    send(&mut app, &mut engine, Msg::typed(":label depth counter\n"));
    send(&mut app, &mut engine, Msg::typed(":status supported\n"));
    let last = app.circuit.rows.last().unwrap().nodes[0];
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {last}\n")));
    send(
        &mut app,
        &mut engine,
        Msg::typed(":label readout of | pipes `and` backticks\n"),
    );
    send(&mut app, &mut engine, [Msg::ch('4')]);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        insta::assert_snapshot!(format!("notes_{w}x{h}"), draw(&app, w, h).backend());
    }
}

#[test]
fn heat_strip_colours_carry_the_sign() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let run = app.lab.run.clone().unwrap();
    let n = app.selected.unwrap();
    let acts = &run.acts[&n];
    let scale = acts.iter().fold(0f32, |m, v| m.max(v.abs()));
    // The strongest token is drawn in the scale's extreme colour, red for positive and blue for negative.
    let (i, v) = acts
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, v)| (i, *v))
        .unwrap();
    assert!(scale > 0.0);
    // Move the cursor to that token so the strip's title names its value.
    app.lab.cursor = Some(i);
    let t = draw(&app, 120, 40);
    let hit = app
        .hits
        .borrow()
        .iter()
        .find(|(_, h)| *h == tui::app::Hit::Token(i))
        .map(|(r, _)| *r)
        .expect("the token is on screen");
    let cell = &t.backend().buffer()[(hit.x, hit.y)];
    let want = if v > 0.0 {
        Color::Rgb(255, 0, 0)
    } else {
        Color::Rgb(0, 0, 255)
    };
    assert_eq!(cell.bg, want, "token {i} value {v}");
    // Without colours the strongest token is reversed instead.
    app.theme = Theme::new(ColorMode::None);
    let t = draw(&app, 120, 40);
    let cell = &t.backend().buffer()[(hit.x, hit.y)];
    assert_eq!(cell.bg, Color::Reset);
    assert!(cell.modifier.contains(ratatui::style::Modifier::REVERSED));
    // 256 colours: the cube's pure red / blue.
    app.theme = Theme::new(ColorMode::Ansi256);
    let t = draw(&app, 120, 40);
    let cell = &t.backend().buffer()[(hit.x, hit.y)];
    assert_eq!(
        cell.bg,
        if v > 0.0 {
            Color::Indexed(196)
        } else {
            Color::Indexed(21)
        }
    );
}

#[test]
fn walk_edges_and_back() {
    let (mut app, mut engine) = open();
    // A node two out-edges away from the end of the walk: its strongest out-edge leads to a node that has
    // an out-edge of its own.
    let strongest_out = |app: &App, n: NodeId| {
        app.circuit.edges(&n, 0.0).into_iter().find_map(|e| match e.other {
            circuitscope::circuit::GraphNode::Node(m) if !e.incoming => Some(m),
            _ => None,
        })
    };
    let start = app
        .circuit
        .rows
        .iter()
        .flat_map(|r| r.nodes.iter().copied())
        .find(|&n| strongest_out(&app, n).and_then(|m| strongest_out(&app, m)).is_some())
        .expect("a two-step path");
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {start}\n")));
    send(&mut app, &mut engine, [Msg::ch('o')]);
    let second = app.selected.unwrap();
    assert_eq!(Some(second), strongest_out(&app, start), "{}", app.status);
    send(&mut app, &mut engine, [Msg::ch('o')]);
    let third = app.selected.unwrap();
    assert_eq!(Some(third), strongest_out(&app, second));
    send(&mut app, &mut engine, [Msg::ch('[')]);
    assert_eq!(app.selected, Some(second));
    send(&mut app, &mut engine, [Msg::ch('[')]);
    assert_eq!(app.selected, Some(start));
    send(&mut app, &mut engine, [Msg::ch(']')]);
    assert_eq!(app.selected, Some(second));
    // Following an in-edge from there leads to a node with an edge into it.
    send(&mut app, &mut engine, [Msg::ch('i')]);
    let prev = app.selected.unwrap();
    assert!(app
        .circuit
        .edges(&second, 0.0)
        .iter()
        .any(|e| e.incoming && e.other == circuitscope::circuit::GraphNode::Node(prev)));
    // The edge cursor: J moves it, f follows it.
    send(&mut app, &mut engine, [Msg::ch('J'), Msg::ch('f')]);
    assert_ne!(app.selected, Some(prev));
    // hjkl on the map.
    send(&mut app, &mut engine, [Msg::ch('g'), Msg::ch('j')]);
    assert_eq!(app.circuit.position(&app.selected.unwrap()).unwrap().0, 1);
    send(&mut app, &mut engine, [Msg::ch('G')]);
    assert_eq!(
        app.circuit.position(&app.selected.unwrap()).unwrap().0,
        app.circuit.rows.len() - 1
    );
    // A threshold of 1 leaves only the strongest weight edge in the whole circuit.
    send(&mut app, &mut engine, Msg::typed(":threshold 1\n"));
    assert_eq!(app.threshold, 1.0);
    // Marks.
    send(&mut app, &mut engine, [Msg::ch('m')]);
    assert!(app.marks.contains(&app.selected.unwrap()));
}

#[test]
fn jump_by_id_and_label() {
    let (mut app, mut engine) = open();
    let target = app.circuit.rows.last().unwrap().nodes[0];
    send(&mut app, &mut engine, [Msg::ch('/')]);
    send(&mut app, &mut engine, Msg::typed(&target.to_string()));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.selected, Some(target));
    // :goto, then a label set by :label found by a fuzzy query.
    let other = app.circuit.rows[0].nodes[0];
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {other}\n")));
    assert_eq!(app.selected, Some(other));
    send(&mut app, &mut engine, Msg::typed(":label depth counter\n"));
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {target}\n")));
    send(&mut app, &mut engine, [Msg::ch('/')]);
    send(&mut app, &mut engine, Msg::typed("dpthcnt\n"));
    assert_eq!(app.selected, Some(other));
    // A bad id is a message, not a panic.
    send(&mut app, &mut engine, Msg::typed(":goto 9.attn.q[x]\n"));
    assert!(app.status.contains("invalid node id"), "{}", app.status);
    assert_eq!(app.selected, Some(other));
}

#[test]
fn editing_the_prompt_changes_the_magnitudes() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let before = app.magnitudes();
    let first_id = app.lab.run.as_ref().unwrap().id;
    assert!(!before.is_empty());
    // The baseline is the first run, so nothing has changed yet.
    assert!(before.iter().all(|r| r.change == 0.0));
    send(&mut app, &mut engine, [Msg::ch('e')]);
    assert_eq!(app.mode, tui::Mode::Insert);
    send(&mut app, &mut engine, Msg::typed("]\nprint(x"));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc), Msg::Tick]);
    let run = app.lab.run.as_ref().unwrap();
    assert!(run.id > first_id);
    assert!(run.text.ends_with("]\nprint(x"));
    let after = app.magnitudes();
    assert!(after.iter().any(|r| r.change != 0.0), "the table should change");
    // Sorted by |change|.
    assert!(after.windows(2).all(|w| w[0].change.abs() >= w[1].change.abs()));
    // Pinning makes the current run the baseline again.
    send(&mut app, &mut engine, [Msg::ch('p')]);
    assert!(app.magnitudes().iter().all(|r| r.change == 0.0));
    // The cursor token moves the table to another position.
    send(&mut app, &mut engine, [Msg::ch('H')]);
    assert_eq!(app.lab.cursor, Some(0));
}

#[test]
fn ablation_toggles_and_undo_change_the_logit_difference() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let base = app
        .lab
        .run
        .as_ref()
        .unwrap()
        .logit_diff()
        .expect("single-token targets");
    // Ablate every node of the last map row (final_resid channels): the prediction must move.
    let nodes = app.circuit.rows.last().unwrap().nodes.clone();
    for n in &nodes {
        send(&mut app, &mut engine, Msg::typed(&format!(":ablate {n} zero\n")));
    }
    let ablated = app.lab.run.as_ref().unwrap().logit_diff().unwrap();
    assert!((ablated - base).abs() > 1e-4, "{base} → {ablated}");
    assert_eq!(app.lab.ablations.len(), nodes.len());
    // Undo every toggle: back to the unablated value.
    for _ in &nodes {
        send(&mut app, &mut engine, [Msg::ch('u')]);
    }
    assert!(app.lab.ablations.is_empty());
    let undone = app.lab.run.as_ref().unwrap().logit_diff().unwrap();
    assert!((undone - base).abs() < 1e-5);
    // Redo brings the first ablation back.
    send(&mut app, &mut engine, [Msg::ctrl('r')]);
    assert_eq!(app.lab.ablations.len(), 1);
    // Mean ablation from the keyboard on the selected node (task-prompt means without a scan).
    send(&mut app, &mut engine, [Msg::ch('x'), Msg::ch('A')]);
    assert_eq!(app.lab.ablations.len(), 1);
    assert_eq!(app.lab.ablations[0].kind, circuitscope::workbench::AblationKind::Mean);
    assert!(app.lab.error.is_none(), "{:?}", app.lab.error);
}

#[test]
fn inspector_and_sweep() {
    let (mut app, mut engine) = open();
    // A q node: the inspector shows its head's attention with the sink's share.
    let q = app
        .circuit
        .rows
        .iter()
        .find(|r| r.site == Site::AttnQ)
        .map(|r| r.nodes[0])
        .expect("the fixture has q nodes");
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {q}\n")));
    send(&mut app, &mut engine, [Msg::ch('2')]);
    let d = app.details.get(&q).expect("detail arrived");
    assert_eq!(d.task.class_a.len(), d.task.class_b.len());
    assert!(!d.task.class_a.is_empty());
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("sink mass"), "{text}");
    assert!(text.contains("task view"), "{text}");
    // Exemplars from the circuit file are shown with the pivot boxed.
    let ex = app
        .circuit
        .file
        .exemplars
        .as_ref()
        .and_then(|e| e.keys().next().copied())
        .unwrap();
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {ex}\n")));
    let t = draw(&app, 120, 40);
    assert!(screen_text(&t).contains("top #1"));
    assert!(pivot_cells(&t) > 0, "the pivot is marked by style");
    // Length sweep on the lab prompt.
    send(&mut app, &mut engine, [Msg::ch('3')]);
    send(&mut app, &mut engine, Msg::typed(":sweep , 7 6\n"));
    let s = app.lab.sweep.as_ref().expect("sweep result");
    assert_eq!(s.points.len(), 7);
    assert!(s.points.windows(2).all(|w| w[1].tokens > w[0].tokens));
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("at n=6 ("), "{text}");
}

#[test]
fn mouse_clicks_select() {
    let (mut app, mut engine) = open();
    let t = draw(&app, 120, 40);
    let _ = t;
    let (rect, node) = app
        .hits
        .borrow()
        .iter()
        .filter_map(|(r, h)| match h {
            tui::app::Hit::Node(n) => Some((*r, *n)),
            _ => None,
        })
        .next_back()
        .unwrap();
    let click = |x: u16, y: u16| {
        Msg::Mouse(ratatui::crossterm::event::MouseEvent {
            kind: ratatui::crossterm::event::MouseEventKind::Down(ratatui::crossterm::event::MouseButton::Left),
            column: x,
            row: y,
            modifiers: ratatui::crossterm::event::KeyModifiers::NONE,
        })
    };
    send(&mut app, &mut engine, [click(rect.x, rect.y)]);
    assert_eq!(app.selected, Some(node));
    let tab = app
        .hits
        .borrow()
        .iter()
        .find(|(_, h)| *h == tui::app::Hit::Tab(Screen::Lab))
        .map(|(r, _)| *r)
        .unwrap();
    send(&mut app, &mut engine, [click(tab.x + 1, tab.y)]);
    assert_eq!(app.screen, Screen::Lab);
}

#[test]
fn bad_input_is_a_clear_message() {
    // Missing circuit file.
    let err = open_with(root().join("tests/fixtures/tui/nope.json")).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("no circuit file") && msg.contains("nope.json"), "{msg}");
    assert!(!msg.contains('\n'));
    // A circuit made for another model.
    let dir = tempfile::tempdir().unwrap();
    let mut c = CircuitFile::load(&fixture()).unwrap();
    c.model.fingerprint = "0123456789abcdef".into();
    let p = dir.path().join("other.json");
    c.save(&p).unwrap();
    let msg = open_with(p).err().unwrap().to_string();
    assert!(
        msg.contains("was made for model") && msg.contains("0123456789abcdef"),
        "{msg}"
    );
    // A terminal below 80x24 gets one message, no panic, and recovers at full size.
    let (app, _engine) = open();
    for (w, h) in [(79, 30), (100, 23), (20, 5), (1, 1)] {
        let text = screen_text(&draw(&app, w, h));
        assert!(text.contains("needs") || w < 30, "{w}x{h}: {text}");
    }
    let text = screen_text(&draw(&app, 60, 20));
    assert!(text.contains("terminal is 60x20"), "{text}");
    // The CLI: an unknown task exits non-zero with one line that lists the tasks.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_circuitscope"))
        .args(["open", "--task", "no_such_task_circuit"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unknown task `no_such_task_circuit`") && stderr.contains("bracket_counting"),
        "{stderr}"
    );
}

#[test]
fn help_overlay_lists_exactly_the_keymaps_bindings_and_the_commands() {
    use circuitscope::tui::keymap::{BINDINGS, MOUSE};
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('?')]);
    // Tall enough that nothing scrolls.
    let text = screen_text(&draw(&app, 120, 130));
    // The overlay is 110 columns wide, centred over the body (rows 1..129): its inside is columns 6..114 of
    // rows 2..128.
    let inner: Vec<String> = text
        .lines()
        .skip(2)
        .take(126)
        .map(|l| l.chars().skip(6).take(108).collect())
        .collect();
    let rows: Vec<&str> = inner
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("  "))
        .collect();
    let rows: Vec<&str> = rows.into_iter().filter(|l| !l.trim().is_empty()).collect();
    let headings: Vec<&str> = inner
        .iter()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    // Every row of the overlay is a binding, a mouse row or a command, in the tables' order, and nothing else.
    let expected: Vec<(String, &str)> = BINDINGS
        .iter()
        .map(|b| (b.keys.to_string(), b.help))
        .chain(MOUSE.iter().map(|(k, h)| (k.to_string(), *h)))
        .chain(tui::help::COMMANDS.iter().map(|(c, h)| (c.to_string(), *h)))
        .collect();
    assert_eq!(rows.len(), expected.len(), "{text}");
    for (row, (keys, help)) in rows.iter().zip(&expected) {
        let row = row.trim_start();
        assert!(row.starts_with(keys.as_str()), "{row:?} is not the row of `{keys}`");
        let shown = row[keys.len()..].trim_start();
        let head: String = help.chars().take(30).collect();
        assert!(shown.starts_with(&head), "`{keys}`: {shown:?} is not {help:?}");
    }
    let mut scopes: Vec<&str> = Vec::new();
    for b in BINDINGS {
        if scopes.last() != Some(&b.scope.name()) {
            scopes.push(b.scope.name());
        }
    }
    scopes.extend(["mouse", "commands"]);
    assert_eq!(headings, scopes);
}

#[test]
fn workbench_doc_lists_every_key() {
    let section = std::fs::read_to_string(root().join("docs/workbench.md")).unwrap();
    // Markdown tables escape `|`.
    let section = section.replace("\\|", "|");
    for (_, key, _) in tui::help::key_rows() {
        assert!(section.contains(key), "docs/workbench.md misses the key `{key}`");
    }
    for (cmd, _) in tui::help::COMMANDS {
        assert!(section.contains(cmd), "docs/workbench.md misses `{cmd}`");
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let first_block = readme.split("```").nth(1).unwrap_or("");
    assert!(
        first_block.lines().nth(1).is_some_and(
            |l| l.trim().starts_with("cargo run --release -- open ") || l.trim() == "cargo run --release -- open"
        ),
        "README's first command block must start with `cargo run --release -- open`"
    );
}

/// Builds tests/fixtures/tui/bracket_counting.json from the bundled model.
#[test]
#[ignore]
fn make_fixture() {
    let files = ModelFiles::locate(&model_dir()).unwrap();
    let cfg = Config::load(&files.config).unwrap().config;
    let ckpt = Checkpoint::open(&files.weights).unwrap();
    let model = Gpt::from_checkpoint(cfg.clone(), &ckpt, LoadOptions::default()).unwrap();
    let tok = Tokenizer::load(files.tokenizer.unwrap()).unwrap();
    let task = tasks::lookup("bracket_counting").unwrap();
    let pairs = tasks::split(task.as_ref(), Split::Train, 16);
    let targets = task.targets();
    let tid = tok.encode(&targets[0]).unwrap()[0];
    let aid = tok.encode(&targets[1]).unwrap()[0];
    let run = |text: &str, hooks: &mut Hooks| -> Vec<f32> {
        let ids = tok.encode(text).unwrap();
        let logits = model.forward_ids(&ids, hooks).unwrap();
        logits.get(ids.len() - 1).unwrap().to_vec1().unwrap()
    };
    // Loss of the model with some nodes zero-ablated, raw (2x) scale, mean over the pairs.
    let loss = |ablate: &[NodeId]| -> f64 {
        let mut total = 0.0;
        for p in &pairs {
            let mut hooks = Hooks::none();
            let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for n in ablate {
                by.entry(n.hook_name()).or_default().push(n.index);
            }
            for (h, ch) in by {
                hooks.intervene(&h, Intervention::new(Action::Set(0.0)).channels(ch));
            }
            let a = run(&p.prompt, &mut hooks);
            let b = run(&p.prompt_alt, &mut hooks);
            total += contrast_loss(&a, &b, tid, Some(aid)) as f64;
        }
        total / pairs.len() as f64
    };
    // Score every channel by |class A − class B| at the last token.
    let mut score: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in &pairs {
        let mut ha = Hooks::recording(".*").unwrap();
        let mut hb = Hooks::recording(".*").unwrap();
        run(&p.prompt, &mut ha);
        run(&p.prompt_alt, &mut hb);
        for (name, t) in &ha.recorded {
            if NodeId::from_hook(name, 0).is_none() {
                continue;
            }
            let a: Vec<f32> = t.squeeze(0).unwrap().to_vec2::<f32>().unwrap().pop().unwrap();
            let b: Vec<f32> = hb.recorded[name]
                .squeeze(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
                .pop()
                .unwrap();
            let s = score.entry(name.clone()).or_insert_with(|| vec![0.0; a.len()]);
            for i in 0..a.len() {
                s[i] += (a[i] - b[i]).abs() as f64;
            }
        }
    }
    let mut nodes: Vec<NodeId> = Vec::new();
    for (hook, s) in &score {
        let per = match NodeId::from_hook(hook, 0).unwrap().site {
            Site::AttnQ | Site::AttnK | Site::AttnV => 3,
            _ => 2,
        };
        let mut idx: Vec<usize> = (0..s.len()).filter(|&i| s[i] > 0.0).collect();
        idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        nodes.extend(idx.into_iter().take(per).map(|i| NodeId::from_hook(hook, i).unwrap()));
    }
    nodes.sort_by_key(|n| n.forward_order());
    let full = loss(&[]);
    let mut c = CircuitFile::new(
        ModelRef {
            fingerprint: model_fingerprint(&ckpt, &cfg).unwrap(),
            name: Some("tinypython-sparse".into()),
            path: None,
            num_total_nodes: cfg.num_nodes(),
        },
        "bracket_counting",
        "fixture:tests/tui.rs (top class-difference channels; zero-ablation losses)",
    );
    c.losses = Losses {
        full,
        circuit: full,
        ..Losses::default()
    };
    for n in &nodes {
        c.nodes.push(CircuitNode {
            id: *n,
            ablated_loss: Some(loss(&[*n])),
        });
    }
    for l in 0..cfg.n_layer {
        for mlp in [false, true] {
            let b = BlockId { layer: l, mlp };
            let inb: Vec<NodeId> = nodes.iter().copied().filter(|n| BlockId::of(n) == Some(b)).collect();
            c.blocks.push(BlockLoss {
                block: b,
                ablated_loss: loss(&inb),
            });
        }
    }
    // Exemplars for the first node: the task prompts around their largest activation, as quantile stand-ins.
    let first = nodes[0];
    let mut ex = Vec::new();
    for p in pairs.iter().take(3) {
        let ids = tok.encode(&p.prompt).unwrap();
        let mut h = Hooks::recording(&format!("{}$", regex_escape(&first.hook_name()))).unwrap();
        model.forward_ids(&ids, &mut h).unwrap();
        let acts: Vec<f32> = h.recorded[&first.hook_name()]
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
            .iter()
            .map(|r| r[first.index])
            .collect();
        let pivot = (0..acts.len())
            .max_by(|&a, &b| acts[a].abs().total_cmp(&acts[b].abs()))
            .unwrap();
        ex.push(Exemplar {
            tokens: ids,
            acts,
            pivot,
        });
    }
    let mut exemplars = BTreeMap::new();
    exemplars.insert(
        first,
        vec![QuantileExemplars {
            quantile: 0.001,
            bottom: ex[2..].to_vec(),
            top: ex[..2].to_vec(),
        }],
    );
    c.exemplars = Some(exemplars);
    c.validate(&cfg).unwrap();
    let graph = circuitscope::circuit::CircuitGraph::build(&c, &cfg, &ckpt).unwrap();
    for (s, t, e) in graph.edges() {
        if let (circuitscope::circuit::GraphNode::Node(s), circuitscope::circuit::GraphNode::Node(t)) = (s, t) {
            if e.kind == circuitscope::circuit::EdgeKind::Weight {
                c.edges.push(circuitscope::circuit::CircuitEdge {
                    source: circuitscope::circuit::EdgeEnd::Node(s),
                    target: circuitscope::circuit::EdgeEnd::Node(t),
                    weight: Some(e.weight),
                    ablation_delta: None,
                });
            }
        }
    }
    std::fs::create_dir_all(fixture().parent().unwrap()).unwrap();
    c.save(&fixture()).unwrap();
    eprintln!(
        "wrote {} ({} nodes, {} edges)",
        fixture().display(),
        c.nodes.len(),
        c.edges.len()
    );
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

#[test]
fn task_command_switches_to_a_sibling_circuit_or_says_why_not() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, Msg::typed(":task\n"));
    assert!(app.status.contains("bracket_counting"), "{}", app.status);
    send(&mut app, &mut engine, Msg::typed(":task for_while\n"));
    assert!(!app.quit && app.switch_task.is_none());
    assert!(app.status.contains("no circuit for task for_while"), "{}", app.status);
    // The fixture's own file counts as the sibling of itself.
    send(&mut app, &mut engine, Msg::typed(":task bracket_counting\n"));
    assert!(app.quit);
    assert_eq!(app.switch_task.as_deref(), Some("bracket_counting"));
}

fn bundled_circuit() -> PathBuf {
    root().join("assets/circuits/tinypython-sparse/set_or_string_fixedvarname.json")
}

#[test]
fn snapshots_of_pruning_and_embedding() {
    let (mut app, mut engine) = open();
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        for (key, name) in [('5', "pruning"), ('6', "embedding")] {
            send(&mut app, &mut engine, [Msg::ch(key)]);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), draw(&app, w, h).backend());
        }
    }
    // A circuit made by `prune`, with its loss curve, bisection and prune_config.
    let l = open_with(bundled_circuit()).expect("the bundled circuit opens");
    let (mut app, mut engine) = (l.app, l.engine);
    app.show_timing = false;
    tui::pump(&mut app, &mut engine);
    send(&mut app, &mut engine, [Msg::ch('5')]);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        insta::assert_snapshot!(format!("pruning_pruned_{w}x{h}"), draw(&app, w, h).backend());
    }
}

#[test]
fn pruning_screen_shows_what_the_file_recorded() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('5')]);
    assert_eq!(app.screen, Screen::Pruning);
    let text = screen_text(&draw(&app, 120, 40));
    // The fixture has no loss curve, bisection or prune_config.
    assert_eq!(text.matches("not recorded").count(), 3 + 3, "{text}");
    let l = open_with(bundled_circuit()).unwrap();
    let (mut app, mut engine) = (l.app, l.engine);
    tui::pump(&mut app, &mut engine);
    send(&mut app, &mut engine, [Msg::ch('5')]);
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("faithfulness vs k (of 2944 nodes)"), "{text}");
    assert!(text.contains("150 steps"), "{text}");
    assert!(text.contains("\"ablation\": \"mean"), "{text}");
    assert!(!text.contains("not recorded"), "{text}");
    let pts = tui::screens::pruning::bisection(app.circuit.file.prune_config.as_ref());
    assert_eq!(pts.len(), 8);
    assert!(pts.windows(2).all(|p| p[0].0 < p[1].0));
    // The prune_config pane scrolls, and not past its end.
    send(&mut app, &mut engine, [Msg::ch('j'), Msg::ch('j')]);
    assert_eq!(app.pruning.scroll, 2);
    let scrolled = screen_text(&draw(&app, 120, 40));
    assert!(scrolled.contains("prune_config 3-"), "{scrolled}");
    send(&mut app, &mut engine, [Msg::ch('g')]);
    assert_eq!(app.pruning.scroll, 0);
}

#[test]
fn embedding_screen_follows_the_node_and_moves_channels() {
    let (mut app, mut engine) = open();
    let residual = app
        .circuit
        .rows
        .iter()
        .flat_map(|r| r.nodes.iter().copied())
        .find(|n| tui::app::is_residual(n.site))
        .expect("the fixture has a residual node");
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {residual}\n")));
    send(&mut app, &mut engine, [Msg::ch('6')]);
    assert_eq!(app.screen, Screen::Embedding);
    assert_eq!(app.embed.channel, residual.index);
    let v = app
        .embed
        .views
        .get(&residual.index)
        .expect("the engine sent the channel")
        .clone();
    assert!(v.top.len() <= 20 && v.bottom.len() <= 20);
    assert!(v.top.iter().chain(&v.bottom).all(|(_, _, w)| *w != 0.0));
    assert!(v.top.windows(2).all(|p| p[0].2 >= p[1].2));
    assert!(v.bottom.windows(2).all(|p| p[0].2 <= p[1].2));
    assert_eq!(v.hist.iter().sum::<u64>() as usize, v.nonzero);
    assert!(v.top.iter().all(|(_, s, _)| !s.contains(' ')), "spaces are shown as ␣");
    // The inspector's "embedding writes it" list reads the same column.
    send(&mut app, &mut engine, [Msg::ch('2'), Msg::ch('6')]);
    let d = &app.details[&residual];
    let strongest = v.top.iter().chain(&v.bottom).map(|x| x.2.abs()).fold(0f32, f32::max);
    assert_eq!(
        d.embed_tokens.first().map(|x| x.1.abs()),
        Some(strongest).filter(|s| *s > 0.0)
    );
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains(&format!("channel {}", residual.index)), "{text}");
    // j / k move the channel and fetch it; the range is clamped.
    send(&mut app, &mut engine, [Msg::ch('j')]);
    assert_eq!(app.embed.channel, residual.index + 1);
    assert!(app.embed.views.contains_key(&(residual.index + 1)));
    send(&mut app, &mut engine, [Msg::ch('k'), Msg::ch('k')]);
    assert_eq!(app.embed.channel, residual.index.saturating_sub(1));
    for _ in 0..100 {
        send(&mut app, &mut engine, [Msg::key(KeyCode::PageUp)]);
    }
    assert_eq!(app.embed.channel, 0);
    for _ in 0..100 {
        send(&mut app, &mut engine, [Msg::key(KeyCode::PageDown)]);
    }
    assert_eq!(app.embed.channel, app.embed.d_model - 1);
    assert!(app.embed.pending.is_empty());
    // g goes back to the selected node's channel.
    send(&mut app, &mut engine, [Msg::ch('g')]);
    assert_eq!(app.embed.channel, residual.index);
}

/// Replaces the lab's prompt as an edit would, and runs it.
fn set_prompt(app: &mut App, engine: &mut Engine, text: &str) {
    app.prompt = ratatui_textarea::TextArea::new(text.split('\n').map(str::to_string).collect());
    app.request_run();
    tui::pump(app, engine);
}

#[test]
fn baseline_comparison_aligns_tokens_from_the_end() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let base = app.lab.baseline.clone().expect("the first run is the baseline");
    // Deleting the first line shortens the prompt: the last token must still meet the baseline's last token.
    let text = app.prompt_text();
    let shorter = text.split_once('\n').expect("a multi-line prompt").1.to_string();
    set_prompt(&mut app, &mut engine, &shorter);
    let run = app.lab.run.clone().unwrap();
    assert!(run.tokens.len() < base.tokens.len());
    let rows = app.magnitudes();
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r.baseline, base.acts[&r.node].last().copied(), "{}", r.node);
    }
    // Other positions are aligned from the end too.
    let off = base.tokens.len() - run.tokens.len();
    send(&mut app, &mut engine, [Msg::ch('H')]);
    for r in app.magnitudes() {
        assert_eq!(r.baseline, Some(base.acts[&r.node][off]), "{}", r.node);
    }
    // A prompt longer than the baseline has no baseline token before the baseline's start.
    set_prompt(&mut app, &mut engine, &format!("x = 1\ny = 2\n{text}"));
    app.lab.cursor = Some(0);
    assert!(app.magnitudes().iter().all(|r| r.baseline.is_none()));
    app.lab.cursor = None;
    for r in app.magnitudes() {
        assert_eq!(r.baseline, base.acts[&r.node].last().copied(), "{}", r.node);
    }
    // The rule in force is on screen.
    for (w, h) in [(120, 40), (80, 24)] {
        let s = screen_text(&draw(&app, w, h));
        assert!(s.contains("aligned from the end"), "{s}");
    }
}

/// Cells drawn reversed and underlined: how a heat strip marks its pivot when there are colours.
fn pivot_cells(t: &Terminal<TestBackend>) -> usize {
    use ratatui::style::Modifier;
    let buf = t.backend().buffer();
    buf.content
        .iter()
        .filter(|c| c.modifier.contains(Modifier::REVERSED | Modifier::UNDERLINED))
        .count()
}

#[test]
fn exemplar_pivots_are_marked_without_code_characters() {
    let (mut app, mut engine) = open();
    let ex = app
        .circuit
        .file
        .exemplars
        .as_ref()
        .and_then(|e| e.keys().next().copied())
        .unwrap();
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {ex}\n")));
    send(&mut app, &mut engine, [Msg::ch('2')]);
    let t = draw(&app, 120, 40);
    let text = screen_text(&t);
    assert!(pivot_cells(&t) > 0, "{text}");
    // The exemplar's text is shown as it is: nothing is added around the pivot.
    assert!(!text.contains('⟦'), "{text}");
    let d = app.details.get(&ex).expect("detail arrived");
    let top = &d.quantiles[0].top[0];
    let pivot = top.pivot.expect("exemplars carry their pivot");
    let around: String = top.tokens[pivot.saturating_sub(1)..=pivot]
        .iter()
        .map(|s| circuitscope::tui::widgets::token_label(s))
        .collect();
    assert!(text.contains(&around), "{around:?} not in\n{text}");
    // The exemplar's caption quotes the pivot token, as the lab does, instead of bracketing it.
    let label = circuitscope::tui::widgets::token_label(&top.tokens[pivot]);
    assert!(find(&t, &format!("top #1 {label:?} = ")).is_some(), "{text}");
    // Without colours the pivot is framed in brackets that never occur in code.
    app.theme = Theme::new(ColorMode::None);
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains('⟦') && text.contains('⟧'), "{text}");
}

/// The number of evidence pieces on `node`'s annotation.
fn evidence_count(app: &App, node: NodeId) -> usize {
    app.annotations.get(&node).map_or(0, |a| a.evidence.len())
}

#[test]
fn stale_numbers_are_marked_and_refused_as_evidence_and_truncation_runs_long_prompts() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let node = app.selected.unwrap();
    let before = app.lab.run.clone().unwrap();
    assert_eq!(app.run_staleness(), None);
    assert!(!screen_text(&draw(&app, 120, 40)).contains("STALE"));
    // A prompt longer than the context does not run: the panes still hold the earlier prompt's numbers.
    let long = format!("{}{}", "x = 1\n".repeat(60), app.prompt_text());
    set_prompt(&mut app, &mut engine, &long);
    assert!(
        app.lab.error.as_deref().unwrap_or("").contains("context"),
        "{:?}",
        app.lab.error
    );
    assert_eq!(app.lab.run.as_ref().unwrap().id, before.id);
    assert!(app.run_staleness().is_some());
    for (w, h) in [(120, 40), (80, 24)] {
        let t = draw(&app, w, h);
        let text = screen_text(&t);
        assert!(text.contains("STALE"), "{text}");
        // The numbers are dimmed.
        let buf = t.backend().buffer();
        assert!(buf
            .content
            .iter()
            .any(|c| c.modifier.contains(ratatui::style::Modifier::DIM)));
    }
    // Evidence is refused while stale.
    send(&mut app, &mut engine, [Msg::ch('E')]);
    assert!(app.status.contains("evidence refused"), "{}", app.status);
    assert_eq!(evidence_count(&app, node), 0);
    // :truncate keeps the last block_size tokens: the long prompt runs and the numbers are current again.
    send(&mut app, &mut engine, Msg::typed(":truncate\n"));
    let run = app.lab.run.clone().unwrap();
    assert_eq!(run.text, long);
    assert!(run.dropped > 0);
    assert_eq!(run.tokens.len(), 128);
    assert_eq!(app.run_staleness(), None);
    let text = screen_text(&draw(&app, 120, 40));
    assert!(!text.contains("STALE"), "{text}");
    assert!(text.contains(&format!("first {} cut", run.dropped)), "{text}");
    send(&mut app, &mut engine, [Msg::ch('E')]);
    assert_eq!(evidence_count(&app, node), 1, "{}", app.status);
    // Off again: the long prompt is refused once more and the numbers are stale.
    send(&mut app, &mut engine, Msg::typed(":truncate\n"));
    assert!(app.lab.error.is_some());
    assert!(app.run_staleness().is_some());
}

/// The last line of the screen (the status bar).
fn status_line(t: &Terminal<TestBackend>) -> String {
    screen_text(t).lines().last().unwrap_or("").to_string()
}

#[test]
fn at_80x24_messages_and_key_numbers_are_whole() {
    let (mut app, mut engine) = open();
    // The editing message does not outlive the editing.
    send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('e')]);
    send(&mut app, &mut engine, Msg::typed("x"));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc), Msg::ch('1')]);
    assert!(!status_line(&draw(&app, 80, 24)).contains("editing"), "{}", app.status);
    // A message is shown whole at 80 columns.
    send(&mut app, &mut engine, Msg::typed(":threshold 0.25\n"));
    let msg = app.status.clone();
    assert!(!msg.is_empty());
    assert!(status_line(&draw(&app, 80, 24)).contains(&msg), "{msg:?}");
    send(&mut app, &mut engine, Msg::typed(":threshold 0\n"));
    // Every screen shows its tab number whole.
    for key in ['1', '2', '3', '4', '5', '6', '7'] {
        send(&mut app, &mut engine, [Msg::ch(key)]);
        let t = draw(&app, 80, 24);
        let header = screen_text(&t).lines().next().unwrap().to_string();
        for n in 1..=7 {
            assert!(header.contains(&format!(" {n} ")), "{header}");
        }
    }
    // The map: the selected node's ablation numbers.
    send(&mut app, &mut engine, [Msg::ch('1')]);
    let text = screen_text(&draw(&app, 80, 24));
    let after = text.split("ablated loss ").nth(1).expect("the ablated loss is shown");
    let number: String = after.chars().take_while(|c| !c.is_whitespace() && *c != '│').collect();
    assert!(
        number.parse::<f64>().is_ok() && number.len() >= 5,
        "{number:?} in\n{text}"
    );
    // The lab: the logit difference's change against the baseline.
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let last = app.circuit.rows.last().unwrap().nodes[0];
    send(&mut app, &mut engine, Msg::typed(&format!(":ablate {last} zero\n")));
    let run = app.lab.run.as_ref().unwrap();
    let d = run.logit_diff().unwrap() - app.lab.baseline.as_ref().unwrap().logit_diff().unwrap();
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains(&format!("Δ {d:+.3}")), "{text}");
    // The embedding screen: the channel's top tokens are not cut to a few characters.
    send(&mut app, &mut engine, [Msg::ch('6')]);
    let ch = app.embed.channel;
    let view = app.embed.views.get(&ch).expect("the embedding view arrived");
    let text = screen_text(&draw(&app, 80, 24));
    for (_, tok, _) in view.top.iter().take(5) {
        let label = circuitscope::tui::widgets::token_label(tok).replace(' ', "␣");
        assert!(text.contains(&label), "{label:?} cut in\n{text}");
    }
}

#[test]
fn the_notes_view_shows_the_ablation_evidence_was_taken_under() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let node = app.selected.unwrap();
    let last = app.circuit.rows.last().unwrap().nodes[0];
    send(&mut app, &mut engine, [Msg::ch('E')]);
    send(&mut app, &mut engine, Msg::typed(&format!(":ablate {last} mean\n")));
    send(&mut app, &mut engine, [Msg::ch('E')]);
    assert_eq!(evidence_count(&app, node), 2, "{}", app.status);
    send(&mut app, &mut engine, [Msg::ch('4')]);
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("no ablation"), "{text}");
    assert!(text.contains(&format!("under {last} mean")), "{text}");
}

#[test]
fn task_names_are_checked_and_the_task_is_described() {
    // `open --task` with a typo lists the valid names.
    let opts = OpenOptions {
        model: model_dir(),
        circuit: None,
        task: "for_whil".into(),
        session: None,
        sae: None,
    };
    let err = tui::load(&opts, Theme::new(ColorMode::TrueColor))
        .err()
        .expect("an unknown task is refused");
    let msg = err.to_string();
    assert!(msg.contains("unknown task `for_whil`"), "{msg}");
    for name in tasks::names() {
        assert!(msg.contains(name), "{name} missing from {msg}");
    }
    // `:task` describes the task and its targets; `:task TYPO` lists the names.
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, Msg::typed(":task\n"));
    let task = tasks::by_name("bracket_counting").unwrap();
    assert!(app.status.contains(task.description()), "{}", app.status);
    for target in task.targets() {
        assert!(app.status.contains(&format!("{target:?}")), "{}", app.status);
    }
    send(&mut app, &mut engine, Msg::typed(":task for_whil\n"));
    assert!(app.status.contains("unknown task `for_whil`"), "{}", app.status);
    assert!(app.status.contains("bracket_counting"), "{}", app.status);
}

/// The lab shows each node's direct effect on the task direction (a column where the table is wide enough, the
/// selected node's in the next-token pane always) and the live task loss and accuracy, which follow the
/// ablations.
#[test]
fn the_lab_shows_direct_effects_and_the_live_task_loss() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let run = app.lab.run.clone().unwrap();
    assert!(!run.direct_effects.is_empty());
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("→A−B"), "{text}");
    let loss = run.task_loss.unwrap();
    assert!(text.contains(&format!("task loss {:.4}", loss / 2.0)), "halved: {text}");
    assert!(
        text.contains(&format!("acc {:.0}%", run.task_accuracy.unwrap() * 100.0)),
        "{text}"
    );
    // A row of the table shows the node's direct effect.
    let rows = app.magnitudes();
    let with = rows
        .iter()
        .find(|r| r.direct.is_some_and(|d| d.abs() > 1e-3))
        .expect("a node with a direct effect");
    assert_eq!(with.direct, run.direct_effects.get(&with.node).copied());
    // At 80 columns the selected node's direct effect is in the next-token pane.
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {}\n", with.node)));
    send(&mut app, &mut engine, [Msg::ch('3')]);
    let text = screen_text(&draw(&app, 80, 24));
    let d = run.direct_effects[&with.node];
    assert!(text.contains(&format!("selected →A−B {d:+.3}")), "{text}");
    assert!(text.contains("task loss"), "{text}");
    // Ablating the circuit's last row changes the loss, and the change against the baseline is shown.
    for n in app.circuit.rows.last().unwrap().nodes.clone() {
        send(&mut app, &mut engine, Msg::typed(&format!(":ablate {n} zero\n")));
    }
    let after = app.lab.run.as_ref().unwrap().task_loss.unwrap();
    assert!((after - loss).abs() > 1e-6, "{loss} → {after}");
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains(&format!("Δ loss {:+.4}", (after - loss) / 2.0)), "{text}");
}

/// `:pairs N` runs N task pairs and shows every node at the decision token with a head's attention on both
/// prompts; keys move through nodes, heads and pairs, and R re-runs under the lab's ablations.
#[test]
fn pairs_screen_compares_the_classes_at_the_decision_token() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, Msg::typed(":pairs 4\n"));
    assert_eq!(app.screen, Screen::Pairs);
    let view = app.pairs.view.clone().expect("the pairs arrived");
    assert_eq!(view.pairs.len(), 4);
    assert!(app.status.contains("4 pairs"), "{}", app.status);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        insta::assert_snapshot!(format!("pairs_{w}x{h}"), draw(&app, w, h).backend());
    }
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("B−A") && text.contains("decision token"), "{text}");
    // The first row is the node with the largest |B − A|.
    let rows = circuitscope::tui::screens::pairs::rows(&view);
    assert!(rows.windows(2).all(|w| w[0].diff.abs() >= w[1].diff.abs()));
    // j selects the next row's node; the head follows a q/k/v node.
    send(&mut app, &mut engine, [Msg::ch('j')]);
    assert_eq!(app.selected, Some(rows[1].node));
    let first_head = circuitscope::tui::screens::pairs::shown_head(&app).expect("a head");
    send(&mut app, &mut engine, [Msg::ch('l')]);
    let next_head = circuitscope::tui::screens::pairs::shown_head(&app).unwrap();
    assert_eq!(next_head != first_head, view.heads.len() > 1);
    assert!(screen_text(&draw(&app, 120, 40)).contains(&format!("head {}.h{}", next_head.0, next_head.1)));
    send(&mut app, &mut engine, [Msg::ch('n')]);
    assert_eq!(app.pairs.pair, 1);
    assert!(screen_text(&draw(&app, 120, 40)).contains("pair 2/4"));
    send(&mut app, &mut engine, [Msg::ch('N'), Msg::ch('N')]);
    assert_eq!(app.pairs.pair, 3, "wraps around");
    // R runs them again under the lab's ablations.
    let node = app.circuit.rows.last().unwrap().nodes[0];
    send(&mut app, &mut engine, Msg::typed(&format!(":ablate {node} zero\n")));
    send(&mut app, &mut engine, [Msg::ch('7'), Msg::ch('R')]);
    let again = app.pairs.view.as_ref().unwrap();
    assert_eq!(again.ablations.len(), 1);
    let row = again.nodes.iter().find(|r| r.node == node).unwrap();
    assert_eq!((row.a, row.b), (0.0, 0.0));
    // Bad counts are one-line messages.
    send(&mut app, &mut engine, Msg::typed(":pairs 0\n"));
    assert!(app.status.contains("pairs takes a number"), "{}", app.status);
}

/// The editor's frame: the rows of the lab's prompt pane (inside its border) at 120x40.
fn editor_rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let (_, top) = find(t, "┌ prompt").expect("the editor is drawn");
    let text = screen_text(t);
    text.lines()
        .skip(top as usize + 1)
        .take_while(|l| !l.starts_with('└'))
        .map(|l| l.chars().skip(1).take_while(|c| *c != '│').collect())
        .collect()
}

#[test]
fn sweep_parses_quotes_stops_at_the_context_in_tokens_and_follows_the_selection() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    // The quotes delimit the fragment: they are not swept.
    send(&mut app, &mut engine, Msg::typed(":sweep \", 7\" 200\n"));
    let s = app.lab.sweep.clone().expect("sweep result");
    assert_eq!(s.fragment, ", 7");
    assert_eq!(
        s.prompt(1),
        format!("{}, 7", app.prompt_text()),
        "inserted at the editor's cursor (the end)"
    );
    // It stops where the prompt outgrows the context, and says so.
    let stop = s.stop.expect("200 repeats do not fit");
    assert!(stop.tokens > stop.context, "{stop:?}");
    assert_eq!(s.points.len(), stop.n);
    assert!(s.points.last().unwrap().tokens <= stop.context);
    assert!(s.points.windows(2).all(|w| w[1].tokens > w[0].tokens));
    // Every circuit node is measured at every point, so the chart can follow the selection.
    assert!(s.points.iter().all(|p| p.values.len() == app.circuit.file.nodes.len()));
    // Wide enough that every line of the pane is whole.
    let text = screen_text(&draw(&app, 220, 60));
    assert!(text.contains("⟨, 7⟩×n"), "the insertion is previewed: {text}");
    assert!(
        text.contains(&format!("makes {} > context {}", stop.tokens, stop.context)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} tokens", stop.context)),
        "x-axis in tokens: {text}"
    );
    assert!(
        text.contains("A−B flips at n=") || text.contains("A−B keeps its sign"),
        "{text}"
    );
    if let Some(f) = s.flip() {
        let first = s.points[0].logit_diff.unwrap();
        assert!(f.logit_diff.unwrap().signum() != first.signum(), "{f:?}");
    }
    // The read-out: the last point, then one back with `<`.
    let last = s.points.last().unwrap();
    assert!(
        text.contains(&format!("at n={} ({} tokens)", last.n, last.tokens)),
        "{text}"
    );
    send(&mut app, &mut engine, [Msg::ch('<')]);
    let prev = &s.points[s.points.len() - 2];
    let text = screen_text(&draw(&app, 220, 60));
    assert!(
        text.contains(&format!("at n={} ({} tokens)", prev.n, prev.tokens)),
        "{text}"
    );
    // The selected node and a marked one are overlaid, each with its value at the read-out point.
    let selected = app.selected.unwrap();
    let other = app.circuit.rows.last().unwrap().nodes[0];
    assert_ne!(selected, other);
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {other}\n")));
    send(&mut app, &mut engine, [Msg::ch('m')]);
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {selected}\n")));
    let text = screen_text(&draw(&app, 120, 40));
    for n in [selected, other] {
        let v = circuitscope::tui::widgets::fmt_val(prev.values[&n]);
        assert!(text.contains(&format!("■ {n} {v}")), "{n} {v}: {text}");
    }
    // Selecting another node follows it without a new sweep.
    let third = app.circuit.rows[1].nodes[0];
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {third}\n")));
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains(&format!("■ {third} ")), "{text}");
    // An unclosed quote is a one-line message, and nothing is swept.
    send(&mut app, &mut engine, Msg::typed(":sweep \", 7 3\n"));
    assert!(app.status.starts_with("unclosed quote"), "{}", app.status);
}

#[test]
fn the_sweep_inserts_at_a_cursor_drawn_outside_editing() {
    use ratatui::style::Modifier;
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    assert_eq!(app.mode, tui::Mode::Normal);
    let t = draw(&app, 120, 40);
    let (_, top) = find(&t, "┌ prompt").unwrap();
    let ratatui_textarea::DataCursor(row, col) = app.prompt.cursor();
    let line = &app.prompt.lines()[row];
    let x = 1 + circuitscope::tui::editor_view::display_col(line, col) as u16;
    let cell = &t.backend().buffer()[(x, top + 1 + row as u16)];
    assert!(
        cell.modifier.contains(Modifier::REVERSED | Modifier::UNDERLINED),
        "the insertion point is visible in normal mode: {cell:?}"
    );
}

#[test]
fn the_editor_scrolls_back_after_a_long_line_is_deleted_and_says_what_is_out_of_view() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    set_prompt(&mut app, &mut engine, "def f():\n    return 1");
    app.prompt.move_cursor(ratatui_textarea::CursorMove::Bottom);
    app.prompt.move_cursor(ratatui_textarea::CursorMove::End);
    send(&mut app, &mut engine, [Msg::ch('e')]);
    let long = "x".repeat(120);
    send(&mut app, &mut engine, Msg::typed(&format!(" + {long}")));
    let rows = editor_rows(&draw(&app, 120, 40));
    assert!(rows[1].trim_end().ends_with("xxxx"), "scrolled to the cursor: {rows:?}");
    assert!(!rows[1].contains("return"), "{rows:?}");
    // Deleting the long part again: the short line shows from its start.
    send(
        &mut app,
        &mut engine,
        (0..long.len() + 3).map(|_| Msg::key(KeyCode::Backspace)),
    );
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc)]);
    assert_eq!(app.prompt_text(), "def f():\n    return 1");
    let rows = editor_rows(&draw(&app, 120, 40));
    assert!(rows[0].starts_with("def f():"), "{rows:?}");
    assert!(rows[1].starts_with("    return 1"), "{rows:?}");
    // A prompt taller than the editor keeps the cursor's line in view and says what is hidden.
    let tall: Vec<String> = (1..=12).map(|i| format!("x{i} = {i}")).collect();
    set_prompt(&mut app, &mut engine, &tall.join("\n"));
    app.prompt.move_cursor(ratatui_textarea::CursorMove::Bottom);
    let t = draw(&app, 120, 40);
    let rows = editor_rows(&t);
    assert!(rows.iter().any(|r| r.starts_with("x12 = 12")), "{rows:?}");
    assert!(!rows.iter().any(|r| r.starts_with("x1 = 1 ")), "{rows:?}");
    let hidden = 12 - rows.len();
    assert!(
        screen_text(&t).contains(&format!("↑{hidden} ↓0 lines")),
        "{}",
        screen_text(&t)
    );
    app.prompt.move_cursor(ratatui_textarea::CursorMove::Top);
    let t = draw(&app, 120, 40);
    assert!(editor_rows(&t)[0].starts_with("x1 = 1"));
    assert!(screen_text(&t).contains(&format!("↑0 ↓{hidden} lines")));
}

#[test]
fn a_literal_backslash_n_can_be_typed_into_a_note() {
    let (mut app, mut engine) = open();
    send(
        &mut app,
        &mut engine,
        Msg::typed(":note first\\nsecond with a literal \\\\n\n"),
    );
    let n = app.selected.unwrap();
    assert_eq!(app.annotations[&n].notes, "first\nsecond with a literal \\n");
    // `e` prefills the command line with the notes written back in the same escapes.
    send(&mut app, &mut engine, [Msg::ch('1'), Msg::ch('e')]);
    assert_eq!(app.command, "note first\\nsecond with a literal \\\\n");
    send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.annotations[&n].notes, "first\nsecond with a literal \\n");
}

#[test]
fn map_labels_show_on_selected_and_marked_nodes_or_all_with_l() {
    let (mut app, mut engine) = open();
    let a = app.circuit.rows[0].nodes[0];
    let b = app.circuit.rows.last().unwrap().nodes[0];
    for (n, label) in [(a, "alpha-label"), (b, "omega-label")] {
        send(
            &mut app,
            &mut engine,
            Msg::typed(&format!(":goto {n}\n:label {label}\n")),
        );
    }
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {a}\n")));
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains("alpha-label"), "the selected node's label: {text}");
    assert!(
        !text.contains(":omega-label"),
        "an unmarked, unselected node's label is hidden: {text}"
    );
    send(&mut app, &mut engine, [Msg::ch('L')]);
    assert!(screen_text(&draw(&app, 120, 40)).contains(":omega-label"));
    send(&mut app, &mut engine, [Msg::ch('L')]);
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {b}\n")));
    send(&mut app, &mut engine, [Msg::ch('m')]);
    send(&mut app, &mut engine, Msg::typed(&format!(":goto {a}\n")));
    assert!(screen_text(&draw(&app, 120, 40)).contains(":omega-label"), "marked");
}

#[test]
fn one_definition_per_count_edges_and_pruning_steps() {
    let l = open_with(bundled_circuit()).expect("the bundled circuit opens");
    let (mut app, mut engine) = (l.app, l.engine);
    tui::pump(&mut app, &mut engine);
    // Edges are weight edges between circuit nodes, as the circuit file (and so the report) counts them.
    let kinds = app.circuit.graph.edge_counts_by_kind();
    assert_eq!(kinds["Weight"], app.circuit.file.edges.len());
    let links = app.circuit.graph.edge_count();
    assert!(links > app.circuit.file.edges.len());
    let text = screen_text(&draw(&app, 220, 60));
    assert!(
        text.contains(&format!(
            "{} edges ({links} links with residual",
            app.circuit.file.edges.len()
        )),
        "{text}"
    );
    let text = screen_text(&draw(&app, 80, 24));
    assert!(
        text.contains(&format!("{} edges", app.circuit.file.edges.len())),
        "{text}"
    );
    assert!(!text.contains(&format!("{links} edges")), "{text}");
    // The pruning chart's title and axis end agree.
    send(&mut app, &mut engine, [Msg::ch('5')]);
    let last = app.circuit.file.loss_curve.last().unwrap().0;
    let text = screen_text(&draw(&app, 120, 40));
    assert!(text.contains(&format!("{last} steps")), "{text}");
    assert!(text.contains(&format!("step {last}")), "{text}");
    assert_eq!(
        tui::screens::pruning::steps_label(&[(1, 0.5), (3, 0.2)]),
        "3 steps, 2 recorded"
    );
}

#[test]
fn the_table_sorts_by_change_in_scan_standard_deviations() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('3')]);
    assert!(!app.lab.node_std.is_empty(), "the bundled model has a scan");
    let text = app.prompt_text();
    let shorter = text.split_once('\n').unwrap().1.to_string();
    set_prompt(&mut app, &mut engine, &shorter);
    send(&mut app, &mut engine, [Msg::ch('o')]);
    assert!(app.lab.sort_by_std);
    let rows = app.magnitudes();
    for r in &rows {
        if let Some(s) = r.sigmas {
            assert!((s - r.change / app.lab.node_std[&r.node]).abs() < 1e-5);
        }
    }
    let keys: Vec<f32> = rows.iter().map(|r| r.sigmas.map_or(-1.0, f32::abs)).collect();
    assert!(keys.windows(2).all(|w| w[0] >= w[1]), "{keys:?}");
    let screen = screen_text(&draw(&app, 120, 40));
    assert!(screen.contains("Δ/σ"), "{screen}");
    send(&mut app, &mut engine, [Msg::ch('o')]);
    let raw: Vec<f32> = app.magnitudes().iter().map(|r| r.change.abs()).collect();
    assert!(raw.windows(2).all(|w| w[0] >= w[1]));
}

/// The Heads screen: `8` computes the framework lens on every head of the bundled sparse model and every head's
/// attention on the lab's prompt; the keys move the selection, cycle the grid's score and the composition kind,
/// and Enter opens the head's q/k/v channels on the circuit map.
#[test]
fn heads_screen_shows_the_framework_lens_and_opens_a_heads_channels() {
    let (mut app, mut engine) = open();
    send(&mut app, &mut engine, [Msg::ch('8')]);
    assert_eq!(app.screen, Screen::Heads);
    let view = app.heads.view.clone().expect("the heads view arrived");
    let cfg = engine.config().clone();
    assert_eq!((view.n_layers, view.n_heads), (cfg.n_layer, cfg.n_head));
    assert_eq!(view.heads.len(), cfg.n_layer * cfg.n_head);
    assert_eq!(view.text, app.prompt_text());
    assert_eq!(view.patterns.len(), view.heads.len());
    let t = view.tokens.len();
    for p in &view.patterns {
        assert_eq!(p.t, t);
        // Each query's weights and its sink share make one.
        for q in 0..t {
            let total: f32 = p.row(q).iter().sum::<f32>() + p.sink[q];
            assert!((total - 1.0).abs() < 1e-3, "{total}");
        }
    }
    // The model has sinks: every head has a sink share.
    assert!(view.heads.iter().all(|h| h.sink_share.is_some()));
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        insta::assert_snapshot!(format!("heads_{w}x{h}"), draw(&app, w, h).backend());
    }
    let text = screen_text(&draw(&app, 120, 40));
    for needle in [
        "induction (s)",
        "K-composition",
        "QK: query → key",
        "OV: source → promoted",
        "attention on the lab",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    // Keys: l / j move, s cycles the score, c the composition kind; the selection stays in the grid.
    send(&mut app, &mut engine, [Msg::ch('l'), Msg::ch('j'), Msg::ch('j')]);
    assert_eq!((app.heads.layer, app.heads.head), (1.min(cfg.n_layer - 1), 1));
    send(&mut app, &mut engine, [Msg::ch('s'), Msg::ch('c')]);
    let text = screen_text(&draw(&app, 120, 40));
    assert!(
        text.contains("previous-token (s)") && text.contains("V-composition"),
        "{text}"
    );
    // Composition is symmetric in the order asked and absent within a layer.
    assert_eq!(
        view.composition_between(1, (0, 1), (1, 2)),
        view.composition_between(1, (1, 2), (0, 1))
    );
    assert_eq!(view.composition_between(1, (0, 1), (0, 2)), None);
    // Enter on a head with q/k/v nodes in the circuit opens the first of them on the map.
    let d_head = cfg.d_head;
    let qkv = app
        .circuit
        .file
        .node_ids()
        .into_iter()
        .find(|n| n.site.is_qkv())
        .expect("the circuit has a q/k/v node");
    app.heads.layer = qkv.layer.unwrap();
    app.heads.head = qkv.index / d_head;
    let channels = circuitscope::tui::screens::heads::head_channels(&app);
    assert!(channels.contains(&qkv));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Map);
    assert_eq!(app.selected, Some(channels[0]));
    assert!(app.status.contains(&channels[0].to_string()), "{}", app.status);
    // A head without channels in the circuit says so; R recomputes the map on an edited prompt.
    send(&mut app, &mut engine, [Msg::ch('8')]);
    let free = (0..cfg.n_layer)
        .flat_map(|l| (0..cfg.n_head).map(move |h| (l, h)))
        .find(|&(l, h)| {
            !app.circuit
                .file
                .node_ids()
                .iter()
                .any(|n| n.site.is_qkv() && n.layer == Some(l) && n.index / d_head == h)
        });
    if let Some((l, h)) = free {
        app.heads.layer = l;
        app.heads.head = h;
        send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
        assert_eq!(app.screen, Screen::Heads);
        assert!(app.status.contains("no q/k/v channels"), "{}", app.status);
    }
    send(&mut app, &mut engine, [Msg::ch('3'), Msg::ch('e')]);
    send(&mut app, &mut engine, Msg::typed(" 4"));
    send(&mut app, &mut engine, [Msg::key(KeyCode::Esc), Msg::ch('8')]);
    let again = app.heads.view.as_ref().unwrap();
    assert_eq!(again.text, app.prompt_text());
    assert!(again.tokens.len() > t);
}
