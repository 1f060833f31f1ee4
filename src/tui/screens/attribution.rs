//! The Attribution screen: the exact attribution graph of the lab's prompt (`circuitscope attribute`), pruned
//! by influence on the target (the task's logit difference when the lab has one, else the top logit), laid
//! out by layer row (embeddings, each block's sites, `final_resid`, logits) and position (the prompt's tokens).
//! The side list holds the selected node's incoming and outgoing edges, strongest first; Enter walks along
//! one. Nodes can be pinned and the pins grouped into named supernodes; both live in the session and go into
//! the markdown report. The engine builds and prunes the graph ([`AttributionView`]) on its thread.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::session::{AttributionPins, PinnedEdge, Supernode};
use crate::tui::app::{App, Hit, Mode, Screen};
use crate::tui::widgets::{fmt_val, text_width, token_label, truncate_to_width};
use crate::workbench::attribution::row_name;
use crate::workbench::{AttrTarget, AttributionView, Request};

/// The node threshold a graph opens with (circuit-tracer's and `attribute`'s default).
pub const NODE_THRESHOLD: f32 = 0.8;
/// The edge threshold (fixed on the screen; `attribute --edge-threshold` sets it on the command line).
pub const EDGE_THRESHOLD: f32 = 0.98;
/// How far `<` and `>` move the node threshold.
const THRESHOLD_STEP: f32 = 0.05;

/// The screen's state: the last graph, the selection in it, the node threshold, the pins and supernodes.
pub struct AttributionState {
    /// The engine's last graph.
    pub view: Option<AttributionView>,
    /// A request is on its way (the screen says "computing…").
    pub pending: bool,
    /// Why the last request failed.
    pub error: Option<String>,
    /// The prompt and node threshold of the last request, so that a failed one is not asked again unchanged.
    pub asked: Option<(String, f32)>,
    /// The selected node (an index into the view's nodes).
    pub selected: Option<usize>,
    /// The highlighted row of the selected node's edge list.
    pub edge_sel: usize,
    /// The node threshold of the next request.
    pub node_threshold: f32,
    /// Pinned nodes, supernodes and the edges among them: what the session keeps.
    pub pins: AttributionPins,
}

impl Default for AttributionState {
    fn default() -> Self {
        AttributionState {
            view: None,
            pending: false,
            error: None,
            asked: None,
            selected: None,
            edge_sel: 0,
            node_threshold: NODE_THRESHOLD,
            pins: AttributionPins::default(),
        }
    }
}

/// What the screen's keys do (bound in [`crate::tui::keymap::BINDINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributionAction {
    /// Move the selection by (layer rows, positions).
    Move(i64, i64),
    /// The next (or previous) node in the selected cell.
    Cycle(i64),
    /// Move the edge cursor.
    Edge(i64),
    /// Walk along the edge under the edge cursor: its other end becomes the selection.
    Follow,
    /// Pin or unpin the selected node.
    Pin,
    /// Group the pinned nodes into a supernode: opens `:supernode ` on the command line.
    Group,
    /// Raise (+1) or lower (−1) the node threshold and recompute.
    Threshold(i64),
    /// Select the node's channel and show it on the circuit map (or in the inspector when the circuit lacks it).
    Open,
    /// Recompute on the lab's current prompt.
    Refresh,
}

/// Applies one of the screen's key actions.
pub fn perform(app: &mut App, a: AttributionAction) {
    match a {
        AttributionAction::Move(dr, dc) => move_selection(app, dr, dc),
        AttributionAction::Cycle(d) => cycle(app, d),
        AttributionAction::Edge(d) => {
            let n = selected_edges(app).len();
            app.attribution.edge_sel =
                (app.attribution.edge_sel as i64 + d).clamp(0, n.saturating_sub(1) as i64) as usize;
        }
        AttributionAction::Follow => follow(app),
        AttributionAction::Pin => toggle_pin(app),
        AttributionAction::Group => {
            if app.attribution.pins.pinned.is_empty() {
                app.status = "no pinned nodes to group (p pins the selected node)".into();
            } else {
                app.command = "supernode ".into();
                app.mode = Mode::Command;
            }
        }
        AttributionAction::Threshold(d) => {
            let t = (app.attribution.node_threshold + d as f32 * THRESHOLD_STEP).clamp(THRESHOLD_STEP, 1.0);
            // Steps of 0.05 without float drift, so that the title and the request agree.
            app.attribution.node_threshold = (t * 100.0).round() / 100.0;
            app.status = format!("node threshold {:.2}: recomputing", app.attribution.node_threshold);
            request(app);
        }
        AttributionAction::Open => open_channel(app),
        AttributionAction::Refresh => request(app),
    }
}

/// The target the screen explains: the lab's logit-difference pair when its run has one, else the top logit.
pub fn target(app: &App) -> AttrTarget {
    match app.lab.run.as_ref().is_some_and(|r| r.target_logits.is_some()) {
        true => AttrTarget::TaskPair,
        false => AttrTarget::TopLogit,
    }
}

/// Asks the engine for the graph of the lab's prompt at the current node threshold.
pub fn request(app: &mut App) {
    app.attribution.pending = true;
    app.attribution.asked = Some((app.prompt_text(), app.attribution.node_threshold));
    let target = target(app);
    app.outbox.push(Request::Attribute {
        text: app.prompt_text(),
        target,
        node_threshold: app.attribution.node_threshold,
        edge_threshold: EDGE_THRESHOLD,
    });
}

/// On entering the screen (and after a reply or a lab run while it is shown): a graph of the lab's prompt as it
/// is now at the current threshold, unless one is there or on its way.
pub fn ensure(app: &mut App) {
    let current = app
        .attribution
        .view
        .as_ref()
        .is_some_and(|v| v.text == app.prompt_text() && v.node_threshold == app.attribution.node_threshold);
    let asked = Some((app.prompt_text(), app.attribution.node_threshold));
    let failed_here = app.attribution.error.is_some() && app.attribution.asked == asked;
    if !current && !app.attribution.pending && !failed_here {
        request(app);
    }
}

/// Takes the engine's graph: keeps the selection on the same node id when the new graph has it (else the
/// node of the largest influence off the targets), and refreshes the pinned edges when the pins are of this
/// prompt.
pub fn on_view(app: &mut App, v: AttributionView) {
    let st = &mut app.attribution;
    st.pending = false;
    st.error = None;
    let old = st
        .selected
        .and_then(|i| st.view.as_ref()?.nodes.get(i))
        .map(|n| n.id.clone());
    let logits = crate::workbench::attribution::logit_row(v.n_layer);
    st.selected = old.and_then(|id| v.index_of(&id)).or_else(|| {
        (0..v.nodes.len())
            .filter(|&i| v.nodes[i].row < logits && v.nodes[i].row > 0)
            .max_by(|&a, &b| v.nodes[a].influence.total_cmp(&v.nodes[b].influence))
            .or((!v.nodes.is_empty()).then_some(0))
    });
    st.edge_sel = 0;
    st.view = Some(v);
    refresh_pinned_edges(st);
    if app.screen == Screen::Attribution {
        // The prompt may have changed while this graph was computed.
        ensure(app);
    }
}

/// Takes a failed request's message.
pub fn on_failed(app: &mut App, msg: String) {
    app.attribution.pending = false;
    app.status = format!("attribution: {msg}");
    app.attribution.error = Some(msg);
    if app.screen == Screen::Attribution {
        // The prompt may have changed while the failed request ran.
        ensure(app);
    }
}

/// The ids of every node the pins and the supernodes name.
fn pinned_and_grouped(pins: &AttributionPins) -> Vec<String> {
    let mut ids = pins.pinned.clone();
    for s in &pins.supernodes {
        for n in &s.nodes {
            if !ids.contains(n) {
                ids.push(n.clone());
            }
        }
    }
    ids
}

/// The edges among the pinned and grouped nodes, from the current graph when it is of the pins' prompt.
fn refresh_pinned_edges(st: &mut AttributionState) {
    let Some(v) = &st.view else { return };
    if v.text != st.pins.prompt {
        return;
    }
    st.pins.edges = v
        .edges_among(&pinned_and_grouped(&st.pins))
        .into_iter()
        .map(|(source, target, weight)| PinnedEdge { source, target, weight })
        .collect();
}

fn toggle_pin(app: &mut App) {
    let Some((id, text)) = selected_node(app).map(|(v, i)| (v.nodes[i].id.clone(), v.text.clone())) else {
        app.status = "no node selected".into();
        return;
    };
    let pins = &mut app.attribution.pins;
    if !pins.pinned.is_empty() && pins.prompt != text {
        app.status = "the pins are of another prompt: :unpin clears them first".into();
        return;
    }
    pins.prompt = text;
    match pins.pinned.iter().position(|p| *p == id) {
        Some(i) => {
            pins.pinned.remove(i);
            app.status = format!("unpinned {id} ({} pinned)", pins.pinned.len());
        }
        None => {
            pins.pinned.push(id.clone());
            app.status = format!("pinned {id} ({} pinned; s groups them)", pins.pinned.len());
        }
    }
    refresh_pinned_edges(&mut app.attribution);
    app.note_unsaved();
}

/// `:supernode NAME`: the pinned nodes become a supernode named NAME (names are unique and not empty).
pub fn group(app: &mut App, name: &str) {
    let name = name.trim();
    let pins = &mut app.attribution.pins;
    if name.is_empty() {
        app.status = "a supernode needs a name: :supernode NAME".into();
    } else if pins.supernodes.iter().any(|s| s.name == name) {
        app.status = format!("a supernode is already named `{name}`; pick another name");
    } else if pins.pinned.is_empty() {
        app.status = "no pinned nodes to group (p pins the selected node on the Attribution screen)".into();
    } else {
        pins.supernodes.push(Supernode {
            name: name.to_string(),
            nodes: pins.pinned.clone(),
        });
        app.status = format!("supernode `{name}`: {} nodes", pins.pinned.len());
        refresh_pinned_edges(&mut app.attribution);
        app.note_unsaved();
    }
}

/// `:unpin`: every pin and supernode off.
pub fn clear_pins(app: &mut App) {
    let pins = &mut app.attribution.pins;
    let (n, s) = (pins.pinned.len(), pins.supernodes.len());
    *pins = AttributionPins::default();
    app.status = format!("cleared {n} pins and {s} supernodes");
    app.note_unsaved();
}

/// The view and the selected node's index in it.
fn selected_node(app: &App) -> Option<(&AttributionView, usize)> {
    let v = app.attribution.view.as_ref()?;
    let i = app.attribution.selected.filter(|&i| i < v.nodes.len())?;
    Some((v, i))
}

/// The selected node's edges as the side list orders them: (incoming, other end, weight).
pub fn selected_edges(app: &App) -> Vec<(bool, usize, f32)> {
    let Some((v, i)) = selected_node(app) else {
        return Vec::new();
    };
    v.edges_of(i)
        .into_iter()
        .map(|(inc, e)| (inc, if inc { e.source } else { e.target }, e.weight))
        .collect()
}

/// Selects node `i` of the graph (a click on its cell), with the edge cursor on its first edge.
pub fn select(app: &mut App, i: usize) {
    app.attribution.selected = Some(i);
    app.attribution.edge_sel = 0;
}

fn follow(app: &mut App) {
    let edges = selected_edges(app);
    match edges.get(app.attribution.edge_sel) {
        Some(&(_, other, _)) => {
            select(app, other);
            if let Some((v, i)) = selected_node(app) {
                app.status = format!("at {}", v.nodes[i].id);
            }
        }
        None => app.status = "no edge there".into(),
    }
}

/// The layer rows and positions that hold kept nodes, in order.
fn axes(v: &AttributionView) -> (Vec<usize>, Vec<usize>) {
    let mut rows: Vec<usize> = v.nodes.iter().map(|n| n.row).collect();
    let mut cols: Vec<usize> = v.nodes.iter().map(|n| n.pos).collect();
    for a in [&mut rows, &mut cols] {
        a.sort_unstable();
        a.dedup();
    }
    (rows, cols)
}

/// The nodes of one (row, position) cell, most influential first.
fn cell_nodes(v: &AttributionView, row: usize, pos: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (0..v.nodes.len())
        .filter(|&i| v.nodes[i].row == row && v.nodes[i].pos == pos)
        .collect();
    c.sort_by(|&a, &b| v.nodes[b].influence.total_cmp(&v.nodes[a].influence).then(a.cmp(&b)));
    c
}

fn move_selection(app: &mut App, dr: i64, dc: i64) {
    let Some((v, i)) = selected_node(app) else { return };
    let (rows, cols) = axes(v);
    let (row, pos) = (v.nodes[i].row, v.nodes[i].pos);
    let ri = rows.iter().position(|&r| r == row).unwrap_or(0) as i64;
    let ci = cols.iter().position(|&c| c == pos).unwrap_or(0) as i64;
    let mut next = None;
    if dc != 0 {
        // Along the row to the next position that has a node in it.
        let mut c = ci + dc;
        while next.is_none() && c >= 0 && (c as usize) < cols.len() {
            next = cell_nodes(v, row, cols[c as usize]).first().copied();
            c += dc.signum();
        }
    } else if dr != 0 {
        // To the next row, at the position nearest to this one.
        let r = (ri + dr).clamp(0, rows.len() as i64 - 1) as usize;
        next = (0..v.nodes.len())
            .filter(|&j| v.nodes[j].row == rows[r])
            .min_by(|&a, &b| {
                let d = |j: usize| v.nodes[j].pos.abs_diff(pos);
                d(a).cmp(&d(b))
                    .then(v.nodes[b].influence.total_cmp(&v.nodes[a].influence))
            });
    }
    if let Some(j) = next {
        select(app, j);
    }
}

fn cycle(app: &mut App, d: i64) {
    let Some((v, i)) = selected_node(app) else { return };
    let cell = cell_nodes(v, v.nodes[i].row, v.nodes[i].pos);
    let k = cell.iter().position(|&j| j == i).unwrap_or(0) as i64;
    let j = cell[(k + d).rem_euclid(cell.len() as i64) as usize];
    select(app, j);
}

fn open_channel(app: &mut App) {
    let Some(ch) = selected_node(app).and_then(|(v, i)| v.nodes[i].channel) else {
        app.status = "the selected node is no channel (an embedding or a logit): nothing to open".into();
        return;
    };
    app.jump(ch);
    if app.circuit.position(&ch).is_some() {
        app.set_screen(Screen::Map);
        app.status = format!("{ch} on the circuit map");
    } else {
        app.set_screen(Screen::Inspector);
        app.status = format!("{ch} is not in this circuit: its scan statistics in the inspector");
    }
}

/// The node's label: the session's label of its channel, else what it is (token, target).
pub fn node_label(app: &App, v: &AttributionView, i: usize) -> String {
    let n = &v.nodes[i];
    n.channel
        .and_then(|c| app.annotations.get(&c))
        .map(|a| a.label.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| n.what.clone())
}

/// A cell's text: the node's label abbreviated, else its channel index (`#98`) or kind (`emb`, `lgt`).
fn cell_text(app: &App, v: &AttributionView, i: usize, w: usize) -> String {
    let n = &v.nodes[i];
    let label = n
        .channel
        .and_then(|c| app.annotations.get(&c))
        .map(|a| a.label.clone())
        .filter(|l| !l.is_empty());
    let s = match (label, n.channel) {
        (Some(l), _) => l,
        (None, Some(c)) => format!("#{}", c.index),
        (None, None) => n.id.split(['@', '[']).next().unwrap_or("").chars().take(3).collect(),
    };
    truncate_to_width(&s, w)
}

/// Draws the screen: the layer × position grid, the selected node with its edges, and a summary line.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let st = &app.attribution;
    let computing = if st.pending { " · computing…" } else { "" };
    let Some(v) = &st.view else {
        let msg = match (&st.error, st.pending) {
            (_, true) => "computing the attribution graph of the lab's prompt…".to_string(),
            (Some(e), false) => format!("no graph: {e} (R tries again)"),
            (None, false) => "no graph yet (R computes it)".to_string(),
        };
        f.render_widget(
            Paragraph::new(Line::styled(msg, t.dim())).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(" attribution "),
            ),
            area,
        );
        return;
    };
    let side_w = if area.width >= 110 { 48 } else { 36 };
    let [grid, side] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(side_w)]).areas(area);
    let stale = match (v.text != app.prompt_text(), st.error.is_some()) {
        (true, true) => " · of an earlier prompt; the current one failed",
        (true, false) => " · of an earlier prompt",
        _ => "",
    };
    let title = format!(
        " {} · node thr {:.2} (< >){computing}{stale} ",
        truncate_to_width(&v.target, 40),
        v.node_threshold
    );
    draw_grid(app, f, grid, v, &title);
    draw_side(app, f, side, v);
}

/// Width of a grid row's label and of one cell (with its gap).
const ROW_LABEL: usize = 13;
const CELL: usize = 6;

fn draw_grid(app: &App, f: &mut Frame, area: Rect, v: &AttributionView, title: &str) {
    let t = &app.theme;
    let st = &app.attribution;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(title.to_string());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let (rows, cols) = axes(v);
    let sel = st.selected.filter(|&i| i < v.nodes.len());
    let label_w = ROW_LABEL.min(inner.width as usize / 3).max(6);
    let fit = ((inner.width as usize).saturating_sub(label_w) / CELL).max(1);
    let sel_col = sel
        .and_then(|i| cols.iter().position(|&c| c == v.nodes[i].pos))
        .unwrap_or(0);
    let (c0, c1) = crate::tui::widgets::window_around(cols.len(), sel_col, fit);
    // Two header lines (summary, tokens) and one footer line.
    let fit_rows = (inner.height as usize).saturating_sub(3).max(1);
    let sel_row = sel
        .and_then(|i| rows.iter().position(|&r| r == v.nodes[i].row))
        .unwrap_or(0);
    let (r0, r1) = crate::tui::widgets::window_around(rows.len(), sel_row, fit_rows);
    let max_infl = v.nodes.iter().map(|n| n.influence).fold(0f32, f32::max);
    let pinned = |i: usize| st.pins.pinned.contains(&v.nodes[i].id) && st.pins.prompt == v.text;
    let mut lines = vec![Line::styled(
        truncate_to_width(
            &format!(
                "{} of {} nodes, {} of {} edges · completeness {:.2}{}",
                v.nodes.len(),
                v.full.0,
                v.edges.len(),
                v.full.1,
                v.completeness,
                if app.show_timing {
                    format!(" · {:.0} ms", v.elapsed_ms)
                } else {
                    String::new()
                }
            ),
            inner.width as usize,
        ),
        t.dim(),
    )];
    let mut head = vec![Span::styled(format!("{:label_w$}", "pos"), t.dim())];
    for &c in &cols[c0..c1] {
        let tok = v.tokens.get(c).map_or(String::new(), |s| token_label(s));
        let s = truncate_to_width(&tok, CELL - 1);
        let pad = (CELL - 1).saturating_sub(text_width(&s));
        head.push(Span::styled(format!("{s}{} ", " ".repeat(pad)), t.dim()));
    }
    lines.push(Line::from(head));
    for (y, &r) in rows[r0..r1].iter().enumerate() {
        let name = truncate_to_width(&row_name(r, v.n_layer), label_w - 1);
        let mut spans = vec![Span::styled(format!("{name:label_w$}"), t.dim())];
        for (x, &c) in cols[c0..c1].iter().enumerate() {
            let cell = cell_nodes(v, r, c);
            let shown = match sel {
                Some(s) if cell.contains(&s) => Some(s),
                _ => cell.first().copied(),
            };
            let (text, style) = match shown {
                None => ("·".to_string(), t.dim()),
                Some(i) => {
                    let more = if cell.len() > 1 { "+" } else { "" };
                    let w = CELL - 1 - more.len();
                    let s = format!("{}{more}", cell_text(app, v, i, w));
                    let style = if Some(i) == sel {
                        t.selected()
                    } else if cell.iter().any(|&j| pinned(j)) {
                        t.marked()
                    } else {
                        t.heat(v.nodes[i].influence, max_infl)
                    };
                    (s, style)
                }
            };
            let pad = (CELL - 1).saturating_sub(text_width(&text));
            if let Some(i) = shown {
                let at = Rect {
                    x: inner.x + (label_w + x * CELL) as u16,
                    y: inner.y + 2 + y as u16,
                    width: (CELL - 1) as u16,
                    height: 1,
                };
                if at.y < inner.y + inner.height && at.x + at.width <= inner.x + inner.width {
                    app.hits.borrow_mut().push((at, Hit::AttrNode(i)));
                }
            }
            spans.push(Span::styled(format!("{text}{}", " ".repeat(pad)), style));
            spans.push(Span::raw(" "));
        }
        lines.push(Line::from(spans));
    }
    let footer = format!(
        "positions {}-{} of {} with nodes · rows {}-{} of {}",
        c0 + 1,
        c1,
        cols.len(),
        r0 + 1,
        r1,
        rows.len()
    );
    while lines.len() + 1 < inner.height as usize {
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled(truncate_to_width(&footer, inner.width as usize), t.dim()));
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_side(app: &App, f: &mut Frame, area: Rect, v: &AttributionView) {
    let t = &app.theme;
    let st = &app.attribution;
    let w = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    let Some(i) = st.selected.filter(|&i| i < v.nodes.len()) else {
        f.render_widget(
            Paragraph::new(Line::styled("no node in the graph", t.dim())).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(" node "),
            ),
            area,
        );
        return;
    };
    let n = &v.nodes[i];
    let is_pinned = st.pins.pinned.contains(&n.id) && st.pins.prompt == v.text;
    lines.push(Line::styled(
        truncate_to_width(&format!("{}{}", n.id, if is_pinned { " (pinned)" } else { "" }), w),
        if is_pinned { t.marked() } else { t.title() },
    ));
    let label = node_label(app, v, i);
    if !label.is_empty() {
        lines.push(Line::styled(truncate_to_width(&label, w), t.accent()));
    }
    let tok = v.tokens.get(n.pos).map_or(String::new(), |s| token_label(s));
    lines.push(Line::styled(
        truncate_to_width(
            &format!(
                "act {} · infl {} · at {tok:?}",
                fmt_val(n.activation),
                fmt_val(n.influence)
            ),
            w,
        ),
        t.text(),
    ));
    let cell = cell_nodes(v, n.row, n.pos).len();
    lines.push(Line::styled(
        if cell > 1 {
            format!("{cell} nodes in this cell (n / N)")
        } else {
            "edges: J/K, Enter walks".to_string()
        },
        t.dim(),
    ));
    let edges = selected_edges(app);
    let head = lines.len();
    let room = (area.height as usize).saturating_sub(2 + head + 1).max(1);
    let (e0, e1) = crate::tui::widgets::window_around(edges.len(), st.edge_sel, room);
    if edges.is_empty() {
        lines.push(Line::styled("no kept edges", t.dim()));
    }
    for (k, &(inc, other, weight)) in edges.iter().enumerate().take(e1).skip(e0) {
        let arrow = if inc { "←" } else { "→" };
        let val = format!(" {:>8}", fmt_val(weight));
        let name_w = w.saturating_sub(2 + text_width(&val));
        let mut name = v.nodes[other].id.clone();
        let l = node_label(app, v, other);
        if !l.is_empty() && v.nodes[other].channel.is_some() {
            name = format!("{name} {l}");
        }
        let name = truncate_to_width(&name, name_w);
        let pad = name_w.saturating_sub(text_width(&name));
        let style = if k == st.edge_sel { t.selected() } else { t.text() };
        lines.push(Line::from(vec![
            Span::styled(format!("{arrow} {name}{}", " ".repeat(pad)), style),
            Span::styled(val, if weight >= 0.0 { t.warn() } else { t.accent() }),
        ]));
    }
    let pins_line = format!(
        "pins {} · supernodes {}{}",
        if st.pins.prompt == v.text {
            st.pins.pinned.len()
        } else {
            0
        },
        st.pins.supernodes.len(),
        match st.pins.supernodes.last() {
            Some(s) => format!(" (last: {})", s.name),
            None => String::new(),
        }
    );
    while lines.len() < (area.height as usize).saturating_sub(3) {
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled(
        truncate_to_width(&pins_line, w),
        Style::default().patch(t.dim()),
    ));
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(format!(" node · {} edges ", edges.len())),
        ),
        area,
    );
}
