//! The one app model and `update`: every message changes the app here, and requests for the engine are queued
//! in `outbox` (the runtime or a test hands them to the engine), so that update never blocks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind};
use ratatui::layout::Rect;
use ratatui_textarea::TextArea;

use super::command::{Command, CommandError, EvidenceKind};
use super::engine::{Ablation, AblationKind, EmbeddingView, NodeDetail, Reply, Request, RunSummary, SweepResult};
use super::msg::Msg;
pub use super::persist::SessionState;
use super::theme::Theme;
use crate::circuit::{BlockId, CircuitFile, CircuitGraph, EdgeKind, GraphEdge, GraphNode, NodeId, Site};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Map,
    Inspector,
    Lab,
    Notes,
    Pruning,
    Embedding,
}

impl Screen {
    pub const ALL: [Screen; 6] = [
        Screen::Map,
        Screen::Inspector,
        Screen::Lab,
        Screen::Notes,
        Screen::Pruning,
        Screen::Embedding,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Map => "1 Circuit map",
            Screen::Inspector => "2 Node inspector",
            Screen::Lab => "3 Prompt lab",
            Screen::Notes => "4 Notes",
            Screen::Pruning => "5 Pruning",
            Screen::Embedding => "6 Embedding",
        }
    }

    /// The tab label on terminals too narrow for [`Screen::title`] (all six fit in 80 columns).
    pub fn short_title(self) -> &'static str {
        match self {
            Screen::Map => "1 Map",
            Screen::Inspector => "2 Node",
            Screen::Lab => "3 Lab",
            Screen::Notes => "4 Notes",
            Screen::Pruning => "5 Prune",
            Screen::Embedding => "6 Embed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
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

/// One line of the circuit map: the nodes of one site of one block, grouped by head for q/k/v.
#[derive(Debug, Clone)]
pub struct MapRow {
    pub block: Option<BlockId>,
    pub site: Site,
    /// (head, nodes) groups; head is None outside q/k/v.
    pub groups: Vec<(Option<usize>, Vec<NodeId>)>,
    pub nodes: Vec<NodeId>,
}

/// A block header on the map.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    pub block: BlockId,
    /// Halved loss change when the whole block is ablated.
    pub delta: Option<f64>,
    pub count: usize,
}

/// The circuit as the UI shows it: the file, its graph, and the map's rows.
pub struct CircuitView {
    pub file: CircuitFile,
    pub graph: CircuitGraph,
    pub path: PathBuf,
    pub model_name: String,
    pub d_head: usize,
    pub rows: Vec<MapRow>,
    pub blocks: Vec<BlockInfo>,
    pub max_weight: f64,
    /// Largest |node delta| (halved), for shading.
    pub max_node_delta: f64,
    pos: HashMap<NodeId, (usize, usize)>,
}

impl CircuitView {
    pub fn new(file: CircuitFile, graph: CircuitGraph, path: PathBuf, model_name: String, d_head: usize) -> Self {
        let mut nodes = file.node_ids();
        nodes.sort_by_key(|n| n.forward_order());
        let mut rows: Vec<MapRow> = Vec::new();
        for n in &nodes {
            let block = BlockId::of(n);
            let head = n.head_channel(d_head).map(|(h, _)| h);
            match rows.last_mut() {
                Some(r) if r.block == block && r.site == n.site => {
                    r.nodes.push(*n);
                    match r.groups.last_mut() {
                        Some(g) if g.0 == head => g.1.push(*n),
                        _ => r.groups.push((head, vec![*n])),
                    }
                }
                _ => rows.push(MapRow {
                    block,
                    site: n.site,
                    groups: vec![(head, vec![*n])],
                    nodes: vec![*n],
                }),
            }
        }
        let mut blocks: Vec<BlockInfo> = Vec::new();
        for r in &rows {
            let Some(b) = r.block else { continue };
            match blocks.last_mut() {
                Some(info) if info.block == b => info.count += r.nodes.len(),
                _ => blocks.push(BlockInfo {
                    block: b,
                    delta: file
                        .blocks
                        .iter()
                        .find(|x| x.block == b)
                        .map(|x| x.delta_halved(&file.losses)),
                    count: r.nodes.len(),
                }),
            }
        }
        let mut pos = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            for (j, n) in r.nodes.iter().enumerate() {
                pos.insert(*n, (i, j));
            }
        }
        let max_node_delta = file
            .nodes
            .iter()
            .filter_map(|n| n.delta_halved(&file.losses))
            .map(f64::abs)
            .fold(0.0, f64::max);
        CircuitView {
            max_weight: graph.max_abs_weight(),
            file,
            graph,
            path,
            model_name,
            d_head,
            rows,
            blocks,
            max_node_delta,
            pos,
        }
    }

    pub fn position(&self, n: &NodeId) -> Option<(usize, usize)> {
        self.pos.get(n).copied()
    }

    pub fn first_node(&self) -> Option<NodeId> {
        self.rows.first().and_then(|r| r.nodes.first()).copied()
    }

    /// The node's halved importance (loss change when ablated), if the file has it.
    pub fn node_delta(&self, n: &NodeId) -> Option<f64> {
        self.file.node(n).and_then(|c| c.delta_halved(&self.file.losses))
    }

    /// 0..=1 shading of a node by importance.
    pub fn importance(&self, n: &NodeId) -> f32 {
        match self.node_delta(n) {
            Some(d) if self.max_node_delta > 0.0 => (d.abs() / self.max_node_delta) as f32,
            _ => 0.0,
        }
    }

    /// In-edges then out-edges of a node that pass the threshold (a fraction of the largest |weight|; only
    /// weight edges are filtered), strongest first within each.
    pub fn edges(&self, n: &NodeId, threshold: f64) -> Vec<EdgeItem> {
        let g = GraphNode::Node(*n);
        let keep = |e: &GraphEdge| e.kind != EdgeKind::Weight || e.weight.abs() >= threshold * self.max_weight;
        let mut out = Vec::new();
        for (incoming, list) in [
            (true, self.graph.in_neighbors(&g)),
            (false, self.graph.out_neighbors(&g)),
        ] {
            let mut list: Vec<(GraphNode, GraphEdge)> =
                list.unwrap_or_default().into_iter().filter(|(_, e)| keep(e)).collect();
            list.sort_by(|a, b| b.1.weight.abs().total_cmp(&a.1.weight.abs()).then(a.0.cmp(&b.0)));
            out.extend(list.into_iter().map(|(other, edge)| EdgeItem { incoming, other, edge }));
        }
        out
    }

    /// Fuzzy matches of `query` against node ids and labels: best first.
    pub fn search(&self, query: &str, labels: &BTreeMap<NodeId, Annotation>) -> Vec<NodeId> {
        let q = query.trim().to_lowercase();
        let mut scored: Vec<(i64, NodeId)> = self
            .rows
            .iter()
            .flat_map(|r| r.nodes.iter())
            .filter_map(|n| {
                let id = n.to_string().to_lowercase();
                let label = labels.get(n).map(|a| a.label.to_lowercase()).unwrap_or_default();
                let s = fuzzy_score(&q, &id).max(fuzzy_score(&q, &label));
                s.map(|s| (s, *n))
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.forward_order().cmp(&b.1.forward_order())));
        scored.into_iter().map(|(_, n)| n).collect()
    }
}

/// Subsequence match score: None if `q` is not a subsequence of `s`; higher for contiguous and early matches,
/// highest for an exact match.
pub fn fuzzy_score(q: &str, s: &str) -> Option<i64> {
    if q.is_empty() {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    if q == s {
        return Some(10_000);
    }
    if let Some(i) = s.find(q) {
        return Some(5_000 - i as i64 - s.len() as i64);
    }
    let mut score = 0i64;
    let mut last: Option<usize> = None;
    let mut it = s.char_indices();
    for qc in q.chars() {
        let (i, _) = it.by_ref().find(|(_, c)| *c == qc)?;
        score += match last {
            Some(l) if i == l + 1 => 10,
            _ => 1,
        };
        last = Some(i);
    }
    Some(score - s.len() as i64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeItem {
    pub incoming: bool,
    pub other: GraphNode,
    pub edge: GraphEdge,
}

pub use crate::session::Annotation;

/// Where a mouse click lands, recorded while drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hit {
    Node(NodeId),
    Tab(Screen),
    Edge(usize),
    TableRow(usize),
    Token(usize),
}

#[derive(Default)]
pub struct LabState {
    pub run: Option<RunSummary>,
    pub baseline: Option<RunSummary>,
    /// The token the table reads; None follows the last token.
    pub cursor: Option<usize>,
    pub ablations: Vec<Ablation>,
    pub undo: Vec<Vec<Ablation>>,
    pub redo: Vec<Vec<Ablation>>,
    pub sweep: Option<SweepResult>,
    pub sweep_fragment: String,
    pub sweep_max: usize,
    pub table_sel: usize,
    /// The pinned baseline's prompt (what a session keeps; the run itself may still be on its way).
    pub pinned_text: Option<String>,
    /// The id of a run whose reply becomes the baseline (a restored pinned prompt).
    pub pin_pending: Option<u64>,
    /// The last ablation change and its measured effect, for "attach evidence".
    pub last_ablation: Option<crate::session::Evidence>,
    /// When the prompt last changed without a run being sent.
    pub dirty_since: Option<Instant>,
    pub next_id: u64,
    pub error: Option<String>,
}

impl LabState {
    /// The token index the table reads in `run`.
    pub fn cursor_in(&self, run: &RunSummary) -> usize {
        let last = run.tokens.len().saturating_sub(1);
        self.cursor.map_or(last, |c| c.min(last))
    }
}

/// The embedding screen: the residual channel it shows and the views the engine has sent.
#[derive(Default)]
pub struct EmbedState {
    pub channel: usize,
    /// The model's d_model (the channel selector's range); 0 until `load` sets it.
    pub d_model: usize,
    pub views: HashMap<usize, EmbeddingView>,
    pub pending: BTreeSet<usize>,
}

/// One row of the magnitudes table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MagnitudeRow {
    pub node: NodeId,
    pub value: f32,
    pub baseline: Option<f32>,
    pub change: f32,
}

pub struct App {
    pub circuit: CircuitView,
    pub task: String,
    pub theme: Theme,
    pub screen: Screen,
    pub mode: Mode,
    pub help: bool,
    pub help_scroll: usize,
    pub selected: Option<NodeId>,
    pub history: Vec<NodeId>,
    pub hist_pos: usize,
    pub marks: BTreeSet<NodeId>,
    pub annotations: BTreeMap<NodeId, Annotation>,
    /// Edge-strength threshold as a fraction of the largest |weight|.
    pub threshold: f64,
    pub edge_sel: usize,
    pub map_scroll: usize,
    pub search: String,
    pub search_sel: usize,
    pub command: String,
    pub prompt: TextArea<'static>,
    pub lab: LabState,
    pub details: HashMap<NodeId, NodeDetail>,
    pub detail_pending: BTreeSet<NodeId>,
    pub quantile: usize,
    pub inspector_scroll: usize,
    pub zero_centre: bool,
    pub outbox: Vec<Request>,
    pub status: String,
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
    pub size: (u16, u16),
    /// The session this app saves to (None: nothing is kept after quit).
    pub session: Option<SessionState>,
    pub notes_filter: String,
    pub notes_sel: usize,
    /// The pruning screen's prune_config pane scroll.
    pub prune_scroll: usize,
    pub embed: EmbedState,
    pub hits: RefCell<Vec<(Rect, Hit)>>,
}

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

impl App {
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
            threshold: 0.0,
            edge_sel: 0,
            map_scroll: 0,
            search: String::new(),
            search_sel: 0,
            command: String::new(),
            prompt: ta,
            lab: LabState {
                sweep_fragment: ", 0".into(),
                sweep_max: 24,
                ..LabState::default()
            },
            details: HashMap::new(),
            detail_pending: BTreeSet::new(),
            quantile: 0,
            inspector_scroll: 0,
            zero_centre: true,
            outbox: Vec::new(),
            status: "? help · : commands · / jump".into(),
            quit: false,
            switch_task: None,
            debounce: Duration::ZERO,
            show_timing: true,
            size: (120, 40),
            session: None,
            notes_filter: String::new(),
            notes_sel: 0,
            prune_scroll: 0,
            embed: EmbedState::default(),
            hits: RefCell::new(Vec::new()),
        };
        app.request_run();
        app
    }

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
    fn select(&mut self, n: NodeId) {
        self.selected = Some(n);
        self.edge_sel = 0;
        self.inspector_scroll = 0;
        if self.screen == Screen::Inspector {
            self.request_detail();
        }
    }

    pub fn back(&mut self) {
        if self.hist_pos > 0 {
            self.hist_pos -= 1;
            self.select(self.history[self.hist_pos]);
        }
    }

    pub fn forward(&mut self) {
        if self.hist_pos + 1 < self.history.len() {
            self.hist_pos += 1;
            self.select(self.history[self.hist_pos]);
        }
    }

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
            self.set_embed_channel(self.embed.channel as i64);
        }
    }

    /// Shows residual channel `ch` (clamped to 0..d_model) on the embedding screen, asking the engine for it.
    pub fn set_embed_channel(&mut self, ch: i64) {
        let max = self.embed.d_model.saturating_sub(1) as i64;
        let ch = if self.embed.d_model > 0 {
            ch.clamp(0, max)
        } else {
            ch.max(0)
        } as usize;
        self.embed.channel = ch;
        if !self.embed.views.contains_key(&ch) && self.embed.pending.insert(ch) {
            self.outbox.push(Request::Embedding { channel: ch });
        }
    }

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

    /// Follows the strongest in- or out-edge that leads to a circuit node.
    fn follow_strongest(&mut self, incoming: bool) {
        let edges = self.edges();
        match edges
            .iter()
            .position(|e| e.incoming == incoming && matches!(e.other, GraphNode::Node(_)))
        {
            Some(i) => self.follow(i),
            None => {
                self.status = format!(
                    "no {} edge to a circuit node above the threshold",
                    if incoming { "in" } else { "out" }
                )
            }
        }
    }

    fn move_map(&mut self, drow: i64, dcol: i64) {
        let rows = &self.circuit.rows;
        if rows.is_empty() {
            return;
        }
        let (r, c) = self.selected.and_then(|n| self.circuit.position(&n)).unwrap_or((0, 0));
        let nr = (r as i64 + drow).clamp(0, rows.len() as i64 - 1) as usize;
        let len = rows[nr].nodes.len() as i64;
        let nc = if drow != 0 {
            (c as i64).min(len - 1)
        } else {
            (c as i64 + dcol).clamp(0, len - 1)
        } as usize;
        let n = rows[nr].nodes[nc];
        self.select(n);
        self.history.truncate(self.hist_pos + 1);
        if self.history.last() != Some(&n) {
            self.history.push(n);
            self.hist_pos = self.history.len() - 1;
        }
    }

    pub fn toggle_mark(&mut self) {
        if let Some(n) = self.selected {
            if !self.marks.remove(&n) {
                self.marks.insert(n);
                self.status = format!("marked {n} ({} marks)", self.marks.len());
            } else {
                self.status = format!("unmarked {n}");
            }
        }
    }

    fn next_mark(&mut self) {
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
    /// largest change first.
    pub fn magnitudes(&self) -> Vec<MagnitudeRow> {
        let Some(run) = &self.lab.run else { return Vec::new() };
        let pos = self.lab.cursor_in(run);
        let mut rows: Vec<MagnitudeRow> = run
            .acts
            .iter()
            .map(|(n, v)| {
                let value = v.get(pos).copied().unwrap_or(0.0);
                let baseline = self.lab.baseline.as_ref().and_then(|b| {
                    let bv = b.acts.get(n)?;
                    bv.get(pos.min(bv.len().saturating_sub(1))).copied()
                });
                MagnitudeRow {
                    node: *n,
                    value,
                    baseline,
                    change: value - baseline.unwrap_or(0.0),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.change
                .abs()
                .total_cmp(&a.change.abs())
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

    pub fn request_sweep(&mut self) {
        let Some(node) = self.selected else {
            self.status = "select a node first".into();
            return;
        };
        self.outbox.push(Request::Sweep {
            text: self.prompt_text(),
            at: self.cursor_byte(),
            fragment: self.lab.sweep_fragment.clone(),
            max_n: self.lab.sweep_max,
            node,
            ablations: self.lab.ablations.clone(),
        });
        self.status = format!(
            "sweeping {:?} ×0..{} at the editor cursor for {node}",
            self.lab.sweep_fragment, self.lab.sweep_max
        );
    }

    fn on_reply(&mut self, r: Reply) {
        match r {
            Reply::Ran(run) => {
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
                if self.lab.baseline.is_none() && self.lab.pin_pending.is_none() {
                    self.lab.pinned_text = Some(run.text.clone());
                    self.lab.baseline = Some(run.clone());
                }
                if let Some(prev) = self.lab.run.take() {
                    self.note_ablation_result(&prev, &run);
                }
                self.lab.run = Some(run);
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
            Reply::Swept(s) => {
                self.status = format!("sweep: {} points", s.points.len());
                self.lab.sweep = Some(s);
            }
            Reply::Error(e) => self.status = e,
            Reply::Info(m) => self.status = m,
        }
    }

    /// Runs a `:` command line; a line that does not parse says why on the status bar.
    pub fn run_command(&mut self, line: &str) {
        match line.parse::<Command>() {
            Ok(cmd) => self.execute(cmd),
            Err(CommandError::Empty) => {}
            Err(e) => self.status = e.to_string(),
        }
    }

    /// Runs one parsed command.
    pub fn execute(&mut self, cmd: Command) {
        match cmd {
            Command::SaveQuit => {
                self.save_command();
                self.quit = true;
            }
            Command::Quit => self.quit = true,
            Command::Help => self.help = true,
            Command::Goto(n) if self.circuit.position(&n).is_some() => self.jump(n),
            Command::Goto(n) => self.status = format!("{n} is not in this circuit"),
            Command::Ablate { node, kind } => match node.or(self.selected) {
                Some(n) if self.circuit.position(&n).is_some() => self.toggle_ablation(n, kind),
                Some(n) => self.status = format!("{n} is not in this circuit"),
                None => self.status = "no node selected".into(),
            },
            Command::Clear => self.clear_ablations(),
            Command::Task(None) => self.status = format!("task: {}", self.task),
            Command::Task(Some(name)) => {
                let path = self
                    .circuit
                    .path
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join(format!("{name}.json"));
                if path.is_file() {
                    self.switch_task = Some(name);
                    self.quit = true;
                } else {
                    self.status = format!(
                        "no circuit for task {name} at {}; make one with `circuitscope prune --task {name}`",
                        path.display()
                    );
                }
            }
            Command::Threshold(t) => {
                self.threshold = t;
                self.edge_sel = 0;
            }
            Command::Pin => self.pin_baseline(),
            Command::Sweep { fragment, max } => {
                if let Some(f) = fragment {
                    self.lab.sweep_fragment = f;
                }
                if let Some(n) = max {
                    self.lab.sweep_max = n;
                }
                self.request_sweep();
            }
            Command::Annotate(a) => self.annotate(a),
            Command::Evidence(EvidenceKind::Prompt) => self.attach_prompt_evidence(),
            Command::Evidence(EvidenceKind::Ablation) => self.attach_ablation_evidence(),
            Command::Keep(name) => self.keep_prompt(name.as_deref().unwrap_or("")),
            Command::Recall(which) => self.recall_prompt(&which),
            Command::Save => self.save_command(),
            Command::Export(file) => self.export_command(file.as_deref().unwrap_or("")),
            Command::Notes(filter) => {
                self.notes_filter = filter;
                self.notes_sel = 0;
                self.set_screen(Screen::Notes);
            }
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
                    self.notes_filter.pop();
                    self.notes_sel = 0;
                }
                KeyCode::Char(c) => {
                    self.notes_filter.push(c);
                    self.notes_sel = 0;
                }
                _ => {}
            },
            Mode::Command => match k.code {
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Enter => {
                    self.mode = Mode::Normal;
                    let line = std::mem::take(&mut self.command);
                    self.run_command(&line);
                }
                KeyCode::Backspace if self.command.pop().is_none() => self.mode = Mode::Normal,
                KeyCode::Char(c) => self.command.push(c),
                _ => {}
            },
            Mode::Normal => self.on_normal_key(k),
        }
    }

    fn on_normal_key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        // Global keys.
        match k.code {
            KeyCode::Char('q') => {
                self.quit = true;
                return;
            }
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
                return;
            }
            KeyCode::Char(':') => {
                self.mode = Mode::Command;
                self.command.clear();
                return;
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Search;
                self.search.clear();
                self.search_sel = 0;
                return;
            }
            KeyCode::Char('1') => return self.set_screen(Screen::Map),
            KeyCode::Char('2') => return self.set_screen(Screen::Inspector),
            KeyCode::Char('3') => return self.set_screen(Screen::Lab),
            KeyCode::Char('4') => return self.set_screen(Screen::Notes),
            KeyCode::Char('5') => return self.set_screen(Screen::Pruning),
            KeyCode::Char('6') => return self.set_screen(Screen::Embedding),
            KeyCode::Char('E') => return self.attach_prompt_evidence(),
            KeyCode::Char('e') if ctrl => return self.attach_ablation_evidence(),
            KeyCode::Tab => {
                let i = Screen::ALL.iter().position(|s| *s == self.screen).unwrap_or(0);
                return self.set_screen(Screen::ALL[(i + 1) % Screen::ALL.len()]);
            }
            KeyCode::BackTab => {
                let i = Screen::ALL.iter().position(|s| *s == self.screen).unwrap_or(0);
                return self.set_screen(Screen::ALL[(i + Screen::ALL.len() - 1) % Screen::ALL.len()]);
            }
            KeyCode::Char('[') | KeyCode::Backspace => return self.back(),
            KeyCode::Char(']') => return self.forward(),
            KeyCode::Char('m') => return self.toggle_mark(),
            KeyCode::Char('\'') => return self.next_mark(),
            KeyCode::Char('+') | KeyCode::Char('=') => {
                self.threshold = (self.threshold + 0.05).min(1.0);
                self.edge_sel = 0;
                self.status = format!("edge threshold {:.2} of max |w|", self.threshold);
                return;
            }
            KeyCode::Char('-') => {
                self.threshold = (self.threshold - 0.05).max(0.0);
                self.edge_sel = 0;
                self.status = format!("edge threshold {:.2} of max |w|", self.threshold);
                return;
            }
            KeyCode::Char('r') if ctrl => return self.redo(),
            _ => {}
        }
        match self.screen {
            Screen::Map | Screen::Inspector => self.on_graph_key(k),
            Screen::Lab => self.on_lab_key(k),
            Screen::Notes => self.on_notes_key(k),
            Screen::Pruning => self.on_pruning_key(k),
            Screen::Embedding => self.on_embedding_key(k),
        }
    }

    fn on_pruning_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Char('j') | KeyCode::Down => self.prune_scroll += 1,
            KeyCode::Char('k') | KeyCode::Up => self.prune_scroll = self.prune_scroll.saturating_sub(1),
            KeyCode::PageDown => self.prune_scroll += 10,
            KeyCode::PageUp => self.prune_scroll = self.prune_scroll.saturating_sub(10),
            KeyCode::Char('g') | KeyCode::Home => self.prune_scroll = 0,
            _ => {}
        }
    }

    fn on_embedding_key(&mut self, k: KeyEvent) {
        let ch = self.embed.channel as i64;
        match k.code {
            KeyCode::Char('j') | KeyCode::Down | KeyCode::Char('l') | KeyCode::Right => self.set_embed_channel(ch + 1),
            KeyCode::Char('k') | KeyCode::Up | KeyCode::Char('h') | KeyCode::Left => self.set_embed_channel(ch - 1),
            KeyCode::PageDown => self.set_embed_channel(ch + 16),
            KeyCode::PageUp => self.set_embed_channel(ch - 16),
            KeyCode::Char('g') => match self.selected.filter(|n| is_residual(n.site)) {
                Some(n) => self.set_embed_channel(n.index as i64),
                None => self.status = "the selected node is not a residual channel".into(),
            },
            _ => {}
        }
    }

    fn on_notes_key(&mut self, k: KeyEvent) {
        let n = self.notes_rows().len();
        match k.code {
            KeyCode::Char('j') | KeyCode::Down if n > 0 => self.notes_sel = (self.notes_sel + 1).min(n - 1),
            KeyCode::Char('k') | KeyCode::Up => self.notes_sel = self.notes_sel.saturating_sub(1),
            KeyCode::Enter => self.notes_jump(),
            KeyCode::Char('f') => {
                self.mode = Mode::Filter;
                self.status = "filter: id, label, notes, tags, status or `conflict`".into();
            }
            KeyCode::Esc => {
                self.notes_filter.clear();
                self.notes_sel = 0;
            }
            _ => {}
        }
    }

    /// Keys shared by the map and the inspector: moving, following edges.
    fn on_graph_key(&mut self, k: KeyEvent) {
        let n_edges = self.edges().len();
        match (self.screen, k.code) {
            (Screen::Map, KeyCode::Char('h') | KeyCode::Left) => self.move_map(0, -1),
            (Screen::Map, KeyCode::Char('l') | KeyCode::Right) => self.move_map(0, 1),
            (Screen::Map, KeyCode::Char('j') | KeyCode::Down) => self.move_map(1, 0),
            (Screen::Map, KeyCode::Char('k') | KeyCode::Up) => self.move_map(-1, 0),
            (Screen::Map, KeyCode::PageDown) => self.move_map(8, 0),
            (Screen::Map, KeyCode::PageUp) => self.move_map(-8, 0),
            (Screen::Map, KeyCode::Char('g') | KeyCode::Home) => self.move_map(-(self.circuit.rows.len() as i64), 0),
            (Screen::Map, KeyCode::Char('G') | KeyCode::End) => self.move_map(self.circuit.rows.len() as i64, 0),
            (Screen::Map, KeyCode::Enter) => self.set_screen(Screen::Inspector),
            (Screen::Inspector, KeyCode::Char('j') | KeyCode::Down) => self.inspector_scroll += 1,
            (Screen::Inspector, KeyCode::Char('k') | KeyCode::Up) => {
                self.inspector_scroll = self.inspector_scroll.saturating_sub(1)
            }
            (Screen::Inspector, KeyCode::PageDown) => self.inspector_scroll += 10,
            (Screen::Inspector, KeyCode::PageUp) => self.inspector_scroll = self.inspector_scroll.saturating_sub(10),
            (Screen::Inspector, KeyCode::Char('n')) => self.quantile += 1,
            (Screen::Inspector, KeyCode::Char('N')) => self.quantile = self.quantile.saturating_sub(1),
            (Screen::Inspector, KeyCode::Char('z')) => self.zero_centre = !self.zero_centre,
            (Screen::Inspector, KeyCode::Esc) => self.set_screen(Screen::Map),
            (_, KeyCode::Char('c')) => self.edit_field("label"),
            (_, KeyCode::Char('e')) => self.edit_field("note"),
            (_, KeyCode::Char('T')) => self.edit_field("tags"),
            (_, KeyCode::Char('s')) => self.cycle_status(),
            (_, KeyCode::Char('J')) if n_edges > 0 => self.edge_sel = (self.edge_sel + 1).min(n_edges - 1),
            (_, KeyCode::Char('K')) => self.edge_sel = self.edge_sel.saturating_sub(1),
            (_, KeyCode::Char('f')) => self.follow(self.edge_sel),
            (_, KeyCode::Char('o')) => self.follow_strongest(false),
            (_, KeyCode::Char('i')) => self.follow_strongest(true),
            (_, KeyCode::Char('a')) => {
                if let Some(n) = self.selected {
                    self.toggle_ablation(n, AblationKind::Zero);
                }
            }
            (_, KeyCode::Char('A')) => {
                if let Some(n) = self.selected {
                    self.toggle_ablation(n, AblationKind::Mean);
                }
            }
            _ => {}
        }
    }

    fn on_lab_key(&mut self, k: KeyEvent) {
        let rows = self.magnitudes();
        let n_tokens = self.lab.run.as_ref().map_or(0, |r| r.tokens.len());
        match k.code {
            KeyCode::Char('e') | KeyCode::Char('i') | KeyCode::Enter => {
                self.mode = Mode::Insert;
                self.status = "editing the prompt: Esc to stop".into();
            }
            KeyCode::Char('h') | KeyCode::Left => {
                let cur = self.lab.run.as_ref().map_or(0, |r| self.lab.cursor_in(r));
                self.lab.cursor = Some(cur.saturating_sub(1));
            }
            KeyCode::Char('l') | KeyCode::Right => {
                let cur = self.lab.run.as_ref().map_or(0, |r| self.lab.cursor_in(r));
                self.lab.cursor = if cur + 1 >= n_tokens { None } else { Some(cur + 1) };
            }
            KeyCode::Char('H') | KeyCode::Home => self.lab.cursor = Some(0),
            KeyCode::Char('L') | KeyCode::End => self.lab.cursor = None,
            KeyCode::Char('j') | KeyCode::Down if !rows.is_empty() => {
                self.lab.table_sel = (self.lab.table_sel + 1).min(rows.len() - 1);
                self.select(rows[self.lab.table_sel].node);
            }
            KeyCode::Char('k') | KeyCode::Up if !rows.is_empty() => {
                self.lab.table_sel = self.lab.table_sel.saturating_sub(1).min(rows.len() - 1);
                self.select(rows[self.lab.table_sel].node);
            }
            KeyCode::Char('p') => self.pin_baseline(),
            KeyCode::Char('a') | KeyCode::Char('A') => {
                let kind = if k.code == KeyCode::Char('A') {
                    AblationKind::Mean
                } else {
                    AblationKind::Zero
                };
                if let Some(n) = self.selected {
                    self.toggle_ablation(n, kind);
                }
            }
            KeyCode::Char('u') => self.undo(),
            KeyCode::Char('x') => self.clear_ablations(),
            KeyCode::Char('s') => self.request_sweep(),
            KeyCode::Char('S') => self.lab.sweep = None,
            KeyCode::Char('R') => self.request_run(),
            _ => {}
        }
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
                None => {}
            },
            MouseEventKind::ScrollDown => self.scroll(1),
            MouseEventKind::ScrollUp => self.scroll(-1),
            _ => {}
        }
    }

    fn scroll(&mut self, d: i64) {
        match self.screen {
            Screen::Map => self.move_map(d, 0),
            Screen::Inspector => {
                self.inspector_scroll = (self.inspector_scroll as i64 + d * 3).max(0) as usize;
            }
            Screen::Lab => {
                let code = if d > 0 { KeyCode::Down } else { KeyCode::Up };
                self.on_lab_key(KeyEvent::new(code, KeyModifiers::NONE));
            }
            Screen::Notes => {
                let code = if d > 0 { KeyCode::Down } else { KeyCode::Up };
                self.on_notes_key(KeyEvent::new(code, KeyModifiers::NONE));
            }
            Screen::Pruning => self.prune_scroll = (self.prune_scroll as i64 + d * 3).max(0) as usize,
            Screen::Embedding => self.set_embed_channel(self.embed.channel as i64 + d),
        }
    }
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
