//! The one app model and `update`: every message changes the app here, and requests for the engine are queued
//! in `outbox` (the runtime or a test hands them to the engine), so that update never blocks.
//!
//! What is here is what the screens share (the circuit, the selection and its history, marks, annotations, the
//! lab's runs and ablations) and the routing of input: keys go through [`keymap`] to an [`Action`], which runs
//! here or in the screen's module under [`screens`]; `:` lines go to [`command`]. Session saving is in
//! [`super::persist`] and never runs on the input path.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind};
use ratatui::layout::Rect;
use ratatui_textarea::TextArea;

pub use super::circuit_view::{fuzzy_score, BlockInfo, CircuitView, EdgeItem, MapRow};
use super::command;
use super::keymap::{self, Action};
use super::msg::Msg;
pub use super::persist::SessionState;
use super::screens;
pub use super::screens::attribution::AttributionState;
pub use super::screens::embedding::EmbedState;
pub use super::screens::heads::HeadsState;
use super::screens::inspector::{InspectorAction, InspectorState};
use super::screens::lab::LabAction;
pub use super::screens::lab::LabState;
use super::screens::notes::{NotesAction, NotesState};
use super::screens::pairs::PairsAction;
pub use super::screens::pairs::PairsState;
use super::screens::pruning::{PruningAction, PruningState};
pub use super::screens::Screen;
use super::theme::Theme;
use crate::circuit::{GraphNode, NodeId};
use crate::workbench::{Ablation, AblationKind, NodeDetail, Reply, Request, RunSummary};

/// What typed keys go to: the screens' bindings, or one of the text inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keys go through [`keymap`] to the screen's and the app's actions.
    Normal,
    /// Editing the lab's prompt.
    Insert,
    /// `/` fuzzy jump.
    Search,
    /// `:` command line.
    Command,
    /// Typing the notes view's filter.
    Filter,
}

pub use crate::session::Annotation;

/// Where a mouse click lands, recorded while drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hit {
    /// A node drawn on the map or listed in a table: selects it.
    Node(NodeId),
    /// A tab in the tab bar: switches to that screen.
    Tab(Screen),
    /// Row `i` of the selected node's edge list (as [`App::edges`] orders it): highlights it, or follows it when
    /// it is already highlighted.
    Edge(usize),
    /// Row `i` of the lab's magnitudes table (an index into [`App::magnitudes`], whatever the scroll): selects
    /// that row and its node.
    TableRow(usize),
    /// Token `i` of the lab's run: moves the token cursor there.
    Token(usize),
    /// Node `i` of the Attribution screen's graph (an index into its view's nodes): selects it.
    AttrNode(usize),
}

/// One row of the magnitudes table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MagnitudeRow {
    /// The circuit node this row is about.
    pub node: NodeId,
    /// The node's activation at the cursor token in the current run.
    pub value: f32,
    /// The node's activation at the aligned token of the pinned baseline (None: no baseline, or no token there;
    /// see [`baseline_position`]).
    pub baseline: Option<f32>,
    /// `value` − `baseline` (the baseline counts as 0 when there is none), the quantity the table sorts by.
    pub change: f32,
    /// The node's direct effect on the task's logit(A) − logit(B) at the last token (None: no direct path, or
    /// no single-token targets).
    pub direct: Option<f32>,
    /// The change in units of the node's standard deviation over the scan corpus (None without a scan or for
    /// a node that never varies).
    pub sigmas: Option<f32>,
}

/// The workbench's whole state: the circuit, what is selected and marked, each screen's state, and the requests
/// waiting for the engine. Changed only by [`update`]; drawn by [`super::view()`].
pub struct App {
    /// The circuit under study, with the lookups the screens draw from.
    pub circuit: CircuitView,
    /// The task's name (its file stem), shown in the title and used to pick the session and switch tasks.
    pub task: String,
    /// Colours and glyphs for the terminal's colour support.
    pub theme: Theme,
    /// The screen shown under the tab bar.
    pub screen: Screen,
    /// Where typed keys go (bindings or one of the text inputs).
    pub mode: Mode,
    /// The help overlay is open (`?`); it lists the bindings of the current screen.
    pub help: bool,
    /// The help overlay's first shown line; clamped when drawn so it never scrolls past the end.
    pub help_scroll: usize,
    /// The node the inspector, the map's highlight and the lab's evidence refer to (None: an empty circuit).
    pub selected: Option<NodeId>,
    /// Nodes selected by jumps, oldest first, for `back`/`forward` like a browser's history.
    pub history: Vec<NodeId>,
    /// Index into `history` of the current position; below `history.len()` whenever `history` is not empty.
    pub hist_pos: usize,
    /// Nodes marked with `m`, in node order (`'` cycles through them); kept in the session.
    pub marks: BTreeSet<NodeId>,
    /// Each node's label, notes and evidence, kept in the session.
    pub annotations: BTreeMap<NodeId, Annotation>,
    /// Automatic explanations (`circuitscope explain`) of the circuit's nodes: shown, dimmed, where the analyst
    /// has written no label; `:accept` takes one as the label.
    pub auto: BTreeMap<NodeId, crate::workbench::AutoLabel>,
    /// Edge-strength threshold as a fraction of the largest |weight|.
    pub threshold: f64,
    /// The map shows every node's label (`L`); by default only the selected and marked nodes'.
    pub map_all_labels: bool,
    /// The highlighted row of the selected node's edge list (an index into [`App::edges`]); reset on every
    /// selection or threshold change.
    pub edge_sel: usize,
    /// The `/` jump's query as typed.
    pub search: String,
    /// The highlighted row of the `/` jump's fuzzy matches.
    pub search_sel: usize,
    /// The `:` command line as typed (without the colon).
    pub command: String,
    /// The lab's prompt editor; its text is what runs.
    pub prompt: TextArea<'static>,
    /// The lab's runs, baseline, ablations and their undo history.
    pub lab: LabState,
    /// The dense model's folder when the opened model is a bridged one (`:bridge on` is refused otherwise).
    pub bridge_dense: Option<String>,
    /// Node details the engine has sent (top activations, neighbours), cached for the inspector.
    pub details: HashMap<NodeId, NodeDetail>,
    /// Nodes whose details were requested and have not arrived, so that each is asked for once.
    pub detail_pending: BTreeSet<NodeId>,
    /// The SAE opened beside the model (`open --sae`), as (the hook it reads, its latent count): its features
    /// can be inspected, labeled and ablated beside the circuit's nodes.
    pub sae: Option<(crate::model::HookName, usize)>,
    /// The inspector's scroll and view state.
    pub inspector: InspectorState,
    /// Requests waiting for the engine; the runtime (or a test) takes them with [`App::take_requests`].
    pub outbox: Vec<Request>,
    /// The one-line message in the status bar: the outcome of the last action or an error.
    pub status: String,
    /// Set by `q`/`:q`: the runtime leaves its loop after this message.
    pub quit: bool,
    /// Set by `:task NAME` together with `quit`: the runtime reopens the workbench on that task's circuit (the
    /// file beside the current one), with that task's session.
    pub switch_task: Option<String>,
    /// How long the prompt must be still before it re-runs. Zero by default: a forward pass takes a few ms on
    /// the bundled model, and edits that arrive while a run is in flight are coalesced anyway (the runtime
    /// drains its queue before sending, and the engine skips superseded runs).
    pub debounce: Duration,
    /// Show run times (off in snapshot tests, where they would differ run to run).
    pub show_timing: bool,
    /// The terminal's size in cells (width, height), kept up to date from resize events.
    pub size: (u16, u16),
    /// The session this app saves to (None: nothing is kept after quit).
    pub session: Option<SessionState>,
    /// The notes screen's state (its cursor and filter).
    pub notes: NotesState,
    /// The pruning screen's state.
    pub pruning: PruningState,
    /// The embedding screen's state (the residual channel shown).
    pub embed: EmbedState,
    /// The pairs screen's state.
    pub pairs: PairsState,
    /// The Heads screen's state (the selected head, the colouring score, the composition kind).
    pub heads: HeadsState,
    /// The Attribution screen's state (the graph, its selection, the node threshold, pins and supernodes).
    pub attribution: AttributionState,
    /// The clickable areas of the last frame, recorded while drawing and cleared at the start of each frame; a
    /// `RefCell` because drawing takes the app by shared reference.
    pub hits: RefCell<Vec<(Rect, Hit)>>,
}

/// The smallest terminal width (cells) the workbench draws in; below it a message asks for a larger window.
pub const MIN_WIDTH: u16 = 80;
/// The smallest terminal height (cells) the workbench draws in.
pub const MIN_HEIGHT: u16 = 24;

impl App {
    /// An app on the map screen with the circuit's first node selected, no session, and a run of `prompt` already
    /// queued in the outbox.
    pub fn new(circuit: CircuitView, task: String, prompt: &str, theme: Theme) -> App {
        let selected = circuit.first_node();
        let mut ta = TextArea::new(prompt.split('\n').map(str::to_string).collect());
        ta.move_cursor(ratatui_textarea::CursorMove::Bottom);
        ta.move_cursor(ratatui_textarea::CursorMove::End);
        let mut app = App {
            circuit,
            task,
            theme,
            screen: Screen::Map,
            mode: Mode::Normal,
            help: false,
            help_scroll: 0,
            selected,
            history: selected.into_iter().collect(),
            hist_pos: 0,
            marks: BTreeSet::new(),
            annotations: BTreeMap::new(),
            auto: BTreeMap::new(),
            threshold: 0.0,
            map_all_labels: false,
            edge_sel: 0,
            search: String::new(),
            search_sel: 0,
            command: String::new(),
            prompt: ta,
            lab: LabState {
                sweep_fragment: ", 0".into(),
                sweep_max: 24,
                ..LabState::default()
            },
            bridge_dense: None,
            details: HashMap::new(),
            detail_pending: BTreeSet::new(),
            sae: None,
            inspector: InspectorState::default(),
            outbox: Vec::new(),
            status: "? help · : commands · / jump".into(),
            quit: false,
            switch_task: None,
            debounce: Duration::ZERO,
            show_timing: true,
            size: (120, 40),
            session: None,
            notes: NotesState::default(),
            pruning: PruningState::default(),
            embed: EmbedState::default(),
            pairs: PairsState::default(),
            heads: HeadsState::default(),
            attribution: AttributionState::default(),
            hits: RefCell::new(Vec::new()),
        };
        app.request_run();
        app
    }

    /// The prompt editor's text, lines joined with `\n`.
    pub fn prompt_text(&self) -> String {
        self.prompt.lines().join("\n")
    }

    /// Queues a run of the prompt as it is now.
    pub fn request_run(&mut self) {
        self.lab.next_id += 1;
        self.lab.dirty_since = None;
        self.outbox.push(Request::Run {
            id: self.lab.next_id,
            text: self.prompt_text(),
            ablations: self.lab.ablations.clone(),
        });
    }

    /// Why the lab's run is not the run of the prompt and ablations as they are now, if it is not: its numbers
    /// are then drawn dimmed and labelled stale, and no evidence is taken from them.
    pub fn run_staleness(&self) -> Option<&'static str> {
        let run = self.lab.run.as_ref()?;
        if run.text != self.prompt_text() {
            Some(if self.lab.error.is_some() {
                "of an earlier prompt; the current one did not run"
            } else {
                "of an earlier prompt"
            })
        } else if run.ablations != self.lab.ablations {
            Some("of other ablations")
        } else if run.bridge.is_some() != self.lab.bridge {
            Some("of the bridge switched the other way")
        } else if run.dropped > 0 && !self.lab.truncate {
            Some("of the prompt truncated; :truncate is off")
        } else {
            None
        }
    }

    /// `:bridge on|off`: the lab's runs also carry their ablations through the bridges into the dense model
    /// (refused, with the reason on the status bar, when the model has no bridges), and re-runs.
    pub fn set_bridge(&mut self, on: bool) {
        if on && self.bridge_dense.is_none() {
            self.status = crate::workbench::engine::NO_BRIDGES.into();
            return;
        }
        self.lab.bridge = on;
        self.outbox.push(Request::Bridge(on));
        self.request_run();
    }

    /// `:truncate`: toggles keeping the last block_size tokens of prompts longer than the context, and re-runs.
    pub fn toggle_truncate(&mut self) {
        self.lab.truncate = !self.lab.truncate;
        self.outbox.push(Request::Truncate(self.lab.truncate));
        self.request_run();
    }

    /// The notes view's rows (see [`screens::notes::rows`]).
    pub fn notes_rows(&self) -> Vec<NodeId> {
        screens::notes::rows(self)
    }

    /// Asks the engine to report, in every run, the SAE features the analyst works on: those annotated in the
    /// session and those jumped to; then re-runs so that the lab's table shows them. Nothing without an SAE.
    pub fn watch_features(&mut self) {
        if self.sae.is_none() {
            return;
        }
        let features: BTreeSet<NodeId> = self
            .annotations
            .keys()
            .chain(&self.history)
            .copied()
            .filter(|n| n.is_feature() && n.check_feature(self.sae).is_ok())
            .collect();
        // Features only join the watch list (annotations are not deleted), so an empty set changes nothing.
        if features.is_empty() {
            return;
        }
        self.outbox.push(Request::WatchFeatures(features.into_iter().collect()));
        self.request_run();
    }

    /// Takes the queued engine requests.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    fn request_detail(&mut self) {
        if let Some(n) = self.selected {
            if !self.details.contains_key(&n) && self.detail_pending.insert(n) {
                self.outbox.push(Request::NodeDetail { node: n });
            }
        }
    }

    /// Selects a node, recording it in the history (dropping any forward history).
    pub fn jump(&mut self, n: NodeId) {
        if self.selected == Some(n) {
            return;
        }
        self.history.truncate(self.hist_pos + 1);
        self.history.push(n);
        self.hist_pos = self.history.len() - 1;
        self.select(n);
    }

    /// Selects without touching the history.
    pub fn select(&mut self, n: NodeId) {
        self.selected = Some(n);
        self.edge_sel = 0;
        self.inspector.scroll = 0;
        if self.screen == Screen::Inspector {
            self.request_detail();
        }
    }

    /// Goes back one step in the selection history (no-op at its start).
    pub fn back(&mut self) {
        if self.hist_pos > 0 {
            self.hist_pos -= 1;
            self.select(self.history[self.hist_pos]);
        }
    }

    /// Goes forward one step in the selection history (no-op at its end).
    pub fn forward(&mut self) {
        if self.hist_pos + 1 < self.history.len() {
            self.hist_pos += 1;
            self.select(self.history[self.hist_pos]);
        }
    }

    /// Shows screen `s`, asking the engine for what it needs (the inspector's node details; the embedding screen
    /// follows the selected node when it is a residual channel).
    pub fn set_screen(&mut self, s: Screen) {
        self.screen = s;
        if s == Screen::Inspector {
            self.request_detail();
        }
        if s == Screen::Embedding {
            // Follow the selected node when it is a residual channel.
            if let Some(n) = self.selected.filter(|n| is_residual(n.site)) {
                self.embed.channel = n.index;
            }
            screens::embedding::set_channel(self, self.embed.channel as i64);
        }
        if s == Screen::Heads {
            screens::heads::ensure(self);
        }
        if s == Screen::Attribution {
            screens::attribution::ensure(self);
        }
    }

    /// The selected node's edges that pass the threshold, as [`CircuitView::edges`] lists them: in-edges then
    /// out-edges, strongest first within each (empty with no selection).
    pub fn edges(&self) -> Vec<EdgeItem> {
        match self.selected {
            Some(n) => self.circuit.edges(&n, self.threshold),
            None => Vec::new(),
        }
    }

    /// Follows edge `i` of the selected node's list to its other end.
    pub fn follow(&mut self, i: usize) {
        match self.edges().get(i).map(|e| e.other) {
            Some(GraphNode::Node(n)) => self.jump(n),
            Some(other) => self.status = format!("`{other}` is the circuit's end; nothing to inspect there"),
            None => self.status = "no edge there (lower the threshold with -)".into(),
        }
    }

    /// Marks the selected node, or unmarks it if it was marked, and says so in the status line.
    pub fn toggle_mark(&mut self) {
        if let Some(n) = self.selected {
            if !self.marks.remove(&n) {
                self.marks.insert(n);
                self.status = format!("marked {n} ({} marks)", self.marks.len());
            } else {
                self.status = format!("unmarked {n}");
            }
            self.note_unsaved();
        }
    }

    /// Jumps to the next marked node after the selected one in node order, wrapping to the first.
    pub fn next_mark(&mut self) {
        let Some(&first) = self.marks.iter().next() else {
            self.status = "no marks (m marks the selected node)".into();
            return;
        };
        let next = self
            .selected
            .and_then(|s| {
                self.marks
                    .range((std::ops::Bound::Excluded(s), std::ops::Bound::Unbounded))
                    .next()
            })
            .copied()
            .unwrap_or(first);
        self.jump(next);
    }

    /// The magnitudes table: every circuit node at the cursor token, with its change against the baseline,
    /// largest change first (raw, or in scan standard deviations with `o`).
    pub fn magnitudes(&self) -> Vec<MagnitudeRow> {
        let Some(run) = &self.lab.run else { return Vec::new() };
        let pos = self.lab.cursor_in(run);
        let base_pos = self.lab.baseline.as_ref().and_then(|b| baseline_position(run, b, pos));
        let mut rows: Vec<MagnitudeRow> = run
            .acts
            .iter()
            .map(|(n, v)| {
                let value = v.get(pos).copied().unwrap_or(0.0);
                let baseline = self
                    .lab
                    .baseline
                    .as_ref()
                    .zip(base_pos)
                    .and_then(|(b, bp)| b.acts.get(n)?.get(bp).copied());
                let change = value - baseline.unwrap_or(0.0);
                MagnitudeRow {
                    node: *n,
                    value,
                    baseline,
                    change,
                    sigmas: self.lab.node_std.get(n).filter(|s| **s > 0.0).map(|s| change / s),
                    direct: run.direct_effects.get(n).copied(),
                }
            })
            .collect();
        // Raw changes bury small residual-write nodes under large normalised ones; in scan standard deviations
        // each node is measured against its own spread (nodes without one go last).
        let key = |r: &MagnitudeRow| match self.lab.sort_by_std {
            true => r.sigmas.map_or(-1.0, f32::abs),
            false => r.change.abs(),
        };
        rows.sort_by(|a, b| {
            key(b)
                .total_cmp(&key(a))
                .then(b.value.abs().total_cmp(&a.value.abs()))
                .then(a.node.forward_order().cmp(&b.node.forward_order()))
        });
        rows
    }

    /// Toggles an ablation of `node` (same kind again removes it; another kind replaces it), undoably.
    pub fn toggle_ablation(&mut self, node: NodeId, kind: AblationKind) {
        self.lab.undo.push(self.lab.ablations.clone());
        self.lab.redo.clear();
        match self.lab.ablations.iter().position(|a| a.node == node) {
            Some(i) if self.lab.ablations[i].kind == kind => {
                self.lab.ablations.remove(i);
                self.status = format!("{node}: ablation off");
            }
            Some(i) => {
                self.lab.ablations[i].kind = kind;
                self.status = format!("{node}: {}-ablated", kind.name());
            }
            None => {
                self.lab.ablations.push(Ablation { node, kind });
                self.status = format!("{node}: {}-ablated", kind.name());
            }
        }
        self.request_run();
    }

    /// Restores the ablations before the last change and re-runs (the current set goes on the redo stack).
    pub fn undo(&mut self) {
        match self.lab.undo.pop() {
            Some(prev) => {
                self.lab.redo.push(std::mem::replace(&mut self.lab.ablations, prev));
                self.status = format!("undo: {} ablations", self.lab.ablations.len());
                self.request_run();
            }
            None => self.status = "nothing to undo".into(),
        }
    }

    /// Re-applies the last undone change of ablations and re-runs.
    pub fn redo(&mut self) {
        match self.lab.redo.pop() {
            Some(next) => {
                self.lab.undo.push(std::mem::replace(&mut self.lab.ablations, next));
                self.status = format!("redo: {} ablations", self.lab.ablations.len());
                self.request_run();
            }
            None => self.status = "nothing to redo".into(),
        }
    }

    /// Pins the current run as the baseline the magnitudes table compares against (no-op before the first run).
    pub fn pin_baseline(&mut self) {
        if let Some(r) = &self.lab.run {
            self.lab.baseline = Some(r.clone());
            self.lab.pinned_text = Some(r.text.clone());
            self.lab.pin_pending = None;
            self.status = "pinned the current run as the baseline".into();
        }
    }

    /// Byte offset of the editor's cursor in the prompt text.
    fn cursor_byte(&self) -> usize {
        let c = self.prompt.cursor();
        let lines = self.prompt.lines();
        let mut off = 0;
        for line in lines.iter().take(c.0) {
            off += line.len() + 1;
        }
        let line = lines.get(c.0).map(String::as_str).unwrap_or("");
        off + line.char_indices().nth(c.1).map_or(line.len(), |(i, _)| i)
    }

    /// Queues a length sweep of the lab's fragment at the editor's cursor (drawn in every mode, so the user sees
    /// where it goes); the pane previews the insertion.
    pub fn request_sweep(&mut self) {
        let ratatui_textarea::DataCursor(row, col) = self.prompt.cursor();
        self.outbox.push(Request::Sweep {
            text: self.prompt_text(),
            at: self.cursor_byte(),
            fragment: self.lab.sweep_fragment.clone(),
            max_n: self.lab.sweep_max,
            ablations: self.lab.ablations.clone(),
        });
        self.lab.sweep_at = None;
        self.status = format!(
            "sweeping {:?} ×0..{} at the editor cursor (line {}, column {})",
            self.lab.sweep_fragment,
            self.lab.sweep_max,
            row + 1,
            col + 1
        );
    }

    fn on_reply(&mut self, r: Reply) {
        match r {
            Reply::Ran(run) => {
                let run = *run;
                // A reply to an older request than one already shown is stale.
                if self.lab.run.as_ref().is_some_and(|cur| cur.id > run.id) {
                    return;
                }
                if self.lab.pin_pending == Some(run.id) {
                    self.lab.pin_pending = None;
                    self.lab.baseline = Some(run);
                    return;
                }
                self.lab.error = None;
                // The first run is the baseline until one is pinned; it is not a pin the user made, so the session
                // does not record it (opening a session must not change it).
                if self.lab.baseline.is_none() && self.lab.pin_pending.is_none() {
                    self.lab.baseline = Some(run.clone());
                }
                if let Some(prev) = self.lab.run.take() {
                    self.note_ablation_result(&prev, &run);
                }
                self.lab.run = Some(run);
                // A new prompt (recalled, or a task target newly known) recomputes the graph on show.
                if self.screen == Screen::Attribution {
                    screens::attribution::ensure(self);
                }
            }
            Reply::RunFailed(id, msg) => {
                if id == self.lab.next_id {
                    self.lab.error = Some(msg);
                }
            }
            Reply::Detail(d) => {
                self.detail_pending.remove(&d.node);
                self.details.insert(d.node, *d);
            }
            Reply::Embedding(v) => {
                self.embed.pending.remove(&v.channel);
                self.embed.views.insert(v.channel, *v);
            }
            Reply::Attribution(v) => screens::attribution::on_view(self, *v),
            Reply::AttributionFailed(e) => screens::attribution::on_failed(self, e),
            Reply::Heads(v) => {
                self.heads.pending = false;
                self.heads.view = Some(*v);
            }
            Reply::Pairs(v) => {
                self.pairs.pending = false;
                self.status = format!(
                    "{} pairs of {} at the decision token{}",
                    v.pairs.len(),
                    v.task,
                    if v.skipped > 0 {
                        format!(" ({} one-sided or unreadable left out)", v.skipped)
                    } else {
                        String::new()
                    }
                );
                self.pairs.pair = self.pairs.pair.min(v.pairs.len().saturating_sub(1));
                self.pairs.view = Some(*v);
            }
            Reply::Swept(s) => {
                self.status = format!(
                    "sweep: {} points · {}",
                    s.points.len(),
                    screens::lab_sweep::stop_line(&s)
                );
                self.lab.sweep = Some(s);
            }
            Reply::Error(e) => self.status = e,
            Reply::Info(m) => self.status = m,
        }
    }

    /// Every ablation off, undoably.
    pub fn clear_ablations(&mut self) {
        self.lab.undo.push(std::mem::take(&mut self.lab.ablations));
        self.lab.redo.clear();
        self.status = "ablations cleared".into();
        self.request_run();
    }

    fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        // A message answers the last thing done: the next key retires it (as in vim), so that it never outlives
        // its moment (the editing message stayed after Esc, across screens) and the hints get their room back.
        self.status.clear();
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if self.help {
            match k.code {
                KeyCode::Char('j') | KeyCode::Down => self.help_scroll += 1,
                KeyCode::Char('k') | KeyCode::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => self.help_scroll += 10,
                KeyCode::PageUp => self.help_scroll = self.help_scroll.saturating_sub(10),
                _ => self.help = false,
            }
            return;
        }
        match self.mode {
            Mode::Insert => {
                if k.code == KeyCode::Esc {
                    self.mode = Mode::Normal;
                    return;
                }
                if self.prompt.input(k) {
                    self.lab.dirty_since = Some(Instant::now());
                }
            }
            Mode::Search => match k.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Enter => {
                    let hits = self.circuit.search(&self.search, &self.annotations);
                    self.mode = Mode::Normal;
                    match hits.get(self.search_sel.min(hits.len().saturating_sub(1))) {
                        Some(&n) if !hits.is_empty() => self.jump(n),
                        _ => self.status = format!("no node matches `{}`", self.search),
                    }
                }
                KeyCode::Backspace => {
                    self.search.pop();
                    self.search_sel = 0;
                }
                KeyCode::Down | KeyCode::Tab => self.search_sel += 1,
                KeyCode::Up | KeyCode::BackTab => self.search_sel = self.search_sel.saturating_sub(1),
                KeyCode::Char(c) => {
                    self.search.push(c);
                    self.search_sel = 0;
                }
                _ => {}
            },
            Mode::Filter => match k.code {
                KeyCode::Esc | KeyCode::Enter => self.mode = Mode::Normal,
                KeyCode::Backspace => {
                    self.notes.filter.pop();
                    self.notes.sel = 0;
                }
                KeyCode::Char(c) => {
                    self.notes.filter.push(c);
                    self.notes.sel = 0;
                }
                _ => {}
            },
            Mode::Command => match k.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Enter => {
                    self.mode = Mode::Normal;
                    let line = std::mem::take(&mut self.command);
                    command::run(self, &line);
                }
                KeyCode::Backspace if self.command.pop().is_none() => self.mode = Mode::Normal,
                KeyCode::Char(c) => self.command.push(c),
                _ => {}
            },
            Mode::Normal => self.on_normal_key(k),
        }
    }

    fn on_normal_key(&mut self, k: KeyEvent) {
        if let Some(action) = keymap::lookup(self.screen, &k) {
            self.perform(action);
        }
    }

    /// Runs what a key is bound to (see [`keymap::BINDINGS`]).
    pub fn perform(&mut self, action: Action) {
        match action {
            Action::App(a) => self.perform_app(a),
            Action::Graph(a) => screens::graph::perform(self, a),
            Action::Map(a) => screens::map::perform(self, a),
            Action::Inspector(a) => screens::inspector::perform(self, a),
            Action::Lab(a) => screens::lab::perform(self, a),
            Action::Notes(a) => screens::notes::perform(self, a),
            Action::Pruning(a) => screens::pruning::perform(self, a),
            Action::Embedding(a) => screens::embedding::perform(self, a),
            Action::Pairs(a) => screens::pairs::perform(self, a),
            Action::Heads(a) => screens::heads::perform(self, a),
            Action::Attribution(a) => screens::attribution::perform(self, a),
        }
    }

    fn perform_app(&mut self, a: AppAction) {
        match a {
            AppAction::Quit => self.quit = true,
            AppAction::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            AppAction::CommandLine => {
                self.mode = Mode::Command;
                self.command.clear();
            }
            AppAction::Search => {
                self.mode = Mode::Search;
                self.search.clear();
                self.search_sel = 0;
            }
            AppAction::Screen(s) => self.set_screen(s),
            AppAction::NextScreen => self.set_screen(self.screen.next()),
            AppAction::PrevScreen => self.set_screen(self.screen.prev()),
            AppAction::Back => self.back(),
            AppAction::Forward => self.forward(),
            AppAction::ToggleMark => self.toggle_mark(),
            AppAction::NextMark => self.next_mark(),
            AppAction::ThresholdUp => self.set_threshold(self.threshold + 0.05),
            AppAction::ThresholdDown => self.set_threshold(self.threshold - 0.05),
            AppAction::Redo => self.redo(),
            AppAction::PromptEvidence => self.attach_prompt_evidence(),
            AppAction::AblationEvidence => self.attach_ablation_evidence(),
        }
    }

    /// Sets the edge-strength threshold (a fraction of the largest |weight|, clamped to 0..=1) and says so.
    pub fn set_threshold(&mut self, t: f64) {
        self.threshold = t.clamp(0.0, 1.0);
        self.edge_sel = 0;
        self.status = format!("edge threshold {:.2} of max |w|", self.threshold);
    }

    fn on_mouse(&mut self, m: ratatui::crossterm::event::MouseEvent) {
        let hit = self
            .hits
            .borrow()
            .iter()
            .rev()
            .find(|(r, _)| m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height)
            .map(|(_, h)| *h);
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => match hit {
                Some(Hit::Node(n)) => self.jump(n),
                Some(Hit::Tab(s)) => self.set_screen(s),
                Some(Hit::Edge(i)) => {
                    if self.edge_sel == i {
                        self.follow(i);
                    } else {
                        self.edge_sel = i;
                    }
                }
                Some(Hit::TableRow(i)) => {
                    let rows = self.magnitudes();
                    if let Some(r) = rows.get(i) {
                        self.lab.table_sel = i;
                        self.select(r.node);
                    }
                }
                Some(Hit::Token(i)) => self.lab.cursor = Some(i),
                Some(Hit::AttrNode(i)) => screens::attribution::select(self, i),
                None => {}
            },
            MouseEventKind::ScrollDown => self.scroll(1),
            MouseEventKind::ScrollUp => self.scroll(-1),
            _ => {}
        }
    }

    /// The mouse wheel: `d` notches down (negative: up), on whatever the screen scrolls.
    fn scroll(&mut self, d: i64) {
        match self.screen {
            Screen::Map => screens::map::move_selection(self, d, 0),
            Screen::Inspector => screens::inspector::perform(self, InspectorAction::Scroll(d * 3)),
            Screen::Lab => screens::lab::perform(
                self,
                if d > 0 {
                    LabAction::TableDown
                } else {
                    LabAction::TableUp
                },
            ),
            Screen::Notes => screens::notes::perform(self, if d > 0 { NotesAction::Down } else { NotesAction::Up }),
            Screen::Pruning => screens::pruning::perform(self, PruningAction::Scroll(d * 3)),
            Screen::Embedding => screens::embedding::set_channel(self, self.embed.channel as i64 + d),
            Screen::Pairs => screens::pairs::perform(self, PairsAction::Move(d)),
            Screen::Heads => screens::heads::perform(self, screens::heads::HeadsAction::Move(0, d)),
            Screen::Attribution => {
                screens::attribution::perform(self, screens::attribution::AttributionAction::Edge(d))
            }
        }
    }
}

/// What the app-wide keys do (bound in [`keymap::BINDINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppAction {
    /// Quits (saving the session).
    Quit,
    /// Opens the help overlay.
    Help,
    /// Opens the `:` command line.
    CommandLine,
    /// Opens the `/` fuzzy jump to a node.
    Search,
    /// Switches to a given screen.
    Screen(Screen),
    /// Switches to the next tab (wrapping).
    NextScreen,
    /// Switches to the previous tab (wrapping).
    PrevScreen,
    /// Back in the selection history.
    Back,
    /// Forward in the selection history.
    Forward,
    /// Marks or unmarks the selected node.
    ToggleMark,
    /// Jumps to the next marked node.
    NextMark,
    /// Raises the edge threshold by 0.05 of the largest |weight|.
    ThresholdUp,
    /// Lowers the edge threshold by 0.05 of the largest |weight|.
    ThresholdDown,
    /// Redoes the last undone change of ablations.
    Redo,
    /// Attaches the current prompt's activation of the selected node to its annotation as evidence.
    PromptEvidence,
    /// Attaches the current ablations' effect on the task to the selected node's annotation as evidence.
    AblationEvidence,
}

/// How the lab pairs a token of the run with a token of the baseline, named where the table shows it.
pub const BASELINE_ALIGNMENT: &str = "aligned from the end";

/// The baseline's token compared with token `pos` of `run`: positions are aligned from the end, so the last
/// token (a task prompt's decision token) meets the baseline's last token whatever an edit did to the length.
/// None where the baseline has no token there (it is shorter than the run by more than `pos` from the end).
pub fn baseline_position(run: &RunSummary, baseline: &RunSummary, pos: usize) -> Option<usize> {
    let from_end = run.tokens.len().checked_sub(pos + 1)?;
    baseline.tokens.len().checked_sub(from_end + 1)
}

/// Residual reads, writes and the final residual: nodes whose index is a residual channel.
pub fn is_residual(s: crate::circuit::Site) -> bool {
    use crate::circuit::Site;
    matches!(
        s,
        Site::AttnActIn | Site::MlpActIn | Site::AttnResidDelta | Site::MlpResidDelta | Site::FinalResid
    )
}

/// The one place the app changes.
pub fn update(app: &mut App, msg: Msg) {
    let is_tick = matches!(msg, Msg::Tick);
    match msg {
        Msg::Key(k) => app.on_key(k),
        Msg::Mouse(m) => app.on_mouse(m),
        Msg::Paste(s) => {
            if app.mode == Mode::Insert {
                app.prompt.insert_str(s);
                app.lab.dirty_since = Some(Instant::now());
            }
        }
        Msg::Resize(w, h) => app.size = (w, h),
        Msg::Tick => {}
        Msg::Engine(r) => app.on_reply(r),
    }
    // The debounce: a run goes out once the prompt has been still for `debounce`.
    if let Some(t) = app.lab.dirty_since {
        if t.elapsed() >= app.debounce {
            app.request_run();
        }
    }
    // Saving never runs here on the input path: a message only marks the session dirty, and the snapshot goes
    // to the writer thread when the input pauses (a tick) or the app quits. Dropping the app flushes the rest.
    if !is_tick {
        if let Some(st) = app.session.as_mut() {
            st.dirty = true;
        }
    }
    if is_tick || app.quit {
        app.autosave();
    }
}

impl Drop for App {
    /// Hands the last changes to the writer; the session's writer then writes them before its thread ends.
    fn drop(&mut self) {
        self.autosave();
    }
}
