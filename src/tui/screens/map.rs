//! The circuit map: the whole circuit from the embedding to the logits, block by block (ablation delta, node
//! count), one line per site with q/k/v nodes grouped by head; beside it the selected node and its edges.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::circuit::{halved, GraphNode, NodeId, Site};
use crate::tui::app::{App, EdgeItem, Hit, Screen};
use crate::tui::theme::Theme;
use crate::tui::widgets::{fmt_opt, text_width};

/// Blocks whose ablation moves the (halved) loss by more than this get a marker, as in the reference viewer.
const DELTA_MARK: f64 = 0.3;

/// What the map's own keys do (the edge and annotation keys are [`super::graph`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAction {
    /// Move by (sites, nodes of the site).
    Move(i64, i64),
    /// Moves the selection to the first row of the map.
    First,
    /// Moves the selection to the last row of the map.
    Last,
    /// Open the node inspector.
    Inspect,
    /// Show every node's label, or only the selected and marked nodes' (the default).
    ToggleLabels,
}

/// Runs a map key's action on the app.
pub fn perform(app: &mut App, a: MapAction) {
    let n_rows = app.circuit.rows.len() as i64;
    match a {
        MapAction::Move(drow, dcol) => move_selection(app, drow, dcol),
        MapAction::First => move_selection(app, -n_rows, 0),
        MapAction::Last => move_selection(app, n_rows, 0),
        MapAction::Inspect => app.set_screen(Screen::Inspector),
        MapAction::ToggleLabels => {
            app.map_all_labels = !app.map_all_labels;
            app.status = if app.map_all_labels {
                "labels on every node (L: only the selected and marked)".into()
            } else {
                "labels on the selected and marked nodes (L: on every node)".into()
            };
        }
    }
}

/// Moves the selection `drow` sites and `dcol` nodes along the site, recording it in the history.
pub fn move_selection(app: &mut App, drow: i64, dcol: i64) {
    let rows = &app.circuit.rows;
    if rows.is_empty() {
        return;
    }
    let (r, c) = app.selected.and_then(|n| app.circuit.position(&n)).unwrap_or((0, 0));
    let nr = (r as i64 + drow).clamp(0, rows.len() as i64 - 1) as usize;
    let len = rows[nr].nodes.len() as i64;
    let nc = if drow != 0 {
        (c as i64).min(len - 1)
    } else {
        (c as i64 + dcol).clamp(0, len - 1)
    } as usize;
    let n = rows[nr].nodes[nc];
    app.select(n);
    app.history.truncate(app.hist_pos + 1);
    if app.history.last() != Some(&n) {
        app.history.push(n);
        app.hist_pos = app.history.len() - 1;
    }
}

/// Draws the map (blocks, sites and nodes, with the selected node's edges) and records the nodes as click targets.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(area);
    let [graph, losses] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(left);
    draw_graph(app, f, graph);
    draw_losses(app, f, losses);
    draw_node_panel(app, f, right);
}

fn site_label(site: Site) -> &'static str {
    match site {
        Site::AttnActIn | Site::MlpActIn => "act_in",
        Site::AttnQ => "q",
        Site::AttnK => "k",
        Site::AttnV => "v",
        Site::AttnResidDelta | Site::MlpResidDelta => "resid_delta",
        Site::MlpPostAct => "post_act",
        Site::FinalResid => "final_resid",
        Site::Sae(_) => "sae",
    }
}

/// A node's chip on the map: its channel (within its head for q/k/v), its label when it is selected or marked
/// (or `L` shows every label: with every node labeled the map is a wall of cut labels), and mark/ablation signs.
pub fn chip(app: &App, n: &NodeId) -> String {
    let mut s = match n.head_channel(app.circuit.d_head) {
        Some((_, c)) => format!("c{c}"),
        None => n.index.to_string(),
    };
    let labeled = app.map_all_labels || app.selected == Some(*n) || app.marks.contains(n);
    if let Some(a) = app.annotations.get(n).filter(|a| labeled && !a.label.is_empty()) {
        let label: String = a.label.chars().take(12).collect();
        s = format!("{s}:{label}");
    }
    if app.marks.contains(n) {
        s = format!("*{s}");
    }
    if let Some(a) = app.lab.ablations.iter().find(|a| a.node == *n) {
        s.push(if a.kind == crate::workbench::AblationKind::Zero {
            '∅'
        } else {
            'μ'
        });
    }
    s
}

/// The automatic explanation shown (dimmed, after the chip) where [`chip`] would show a label but the analyst
/// has written none: `~fires on "x"…`, cut like labels are.
pub fn auto_chip(app: &App, n: &NodeId) -> Option<String> {
    let labeled = app.map_all_labels || app.selected == Some(*n) || app.marks.contains(n);
    let has_label = app.annotations.get(n).is_some_and(|a| !a.label.is_empty());
    if !labeled || has_label {
        return None;
    }
    let text = &app.auto.get(n)?.text;
    let mut short: String = text.chars().take(12).collect();
    if text.chars().count() > 12 {
        short.push('…');
    }
    Some(format!("~{short}"))
}

struct Placed {
    line: usize,
    col: usize,
    width: usize,
    node: NodeId,
}

fn draw_graph(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.focused_border())
        .title(map_title(app, area.width.saturating_sub(2) as usize));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let label_w = 15usize;
    let mut lines: Vec<Line> = vec![Line::styled("embed  (token + position embeddings)", t.dim())];
    let mut placed: Vec<Placed> = Vec::new();
    let mut last_block = None;
    for row in &app.circuit.rows {
        if row.block != last_block {
            last_block = row.block;
            match row.block {
                Some(b) => {
                    let info = app.circuit.blocks.iter().find(|i| i.block == b);
                    let delta = info.and_then(|i| i.delta);
                    let marker = if delta.is_some_and(|d| d > DELTA_MARK) {
                        " ◆"
                    } else {
                        ""
                    };
                    lines.push(Line::from(vec![
                        Span::styled(format!("{b}"), t.title()),
                        Span::styled(
                            format!("  Δ {}  nodes {}{marker}", fmt_opt(delta), info.map_or(0, |i| i.count)),
                            if marker.is_empty() { t.dim() } else { t.accent() },
                        ),
                    ]));
                }
                None => lines.push(Line::styled("final", t.title())),
            }
        }
        let mut spans = vec![Span::styled(
            format!("  {:<w$}", site_label(row.site), w = label_w - 2),
            t.dim(),
        )];
        let mut col = label_w;
        for (head, nodes) in &row.groups {
            if let Some(h) = head {
                let tag = format!("h{h}: ");
                if col + tag.len() > width && col > label_w {
                    lines.push(Line::from(std::mem::take(&mut spans)));
                    spans.push(Span::raw(" ".repeat(label_w)));
                    col = label_w;
                }
                col += tag.len();
                spans.push(Span::styled(tag, t.dim()));
            }
            for n in nodes {
                let text = chip(app, n);
                let auto = auto_chip(app, n);
                let w = text_width(&text) + auto.as_deref().map_or(0, text_width);
                if col + w + 1 > width && col > label_w {
                    lines.push(Line::from(std::mem::take(&mut spans)));
                    spans.push(Span::raw(" ".repeat(label_w)));
                    col = label_w;
                }
                let style = node_style(app, t, n);
                placed.push(Placed {
                    line: lines.len(),
                    col,
                    width: w,
                    node: *n,
                });
                spans.push(Span::styled(text, style));
                if let Some(a) = auto {
                    spans.push(Span::styled(a, t.dim()));
                }
                spans.push(Span::raw(" "));
                col += w + 1;
            }
            spans.push(Span::raw(" "));
            col += 1;
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::styled("logits", t.dim()));
    // Keep the selected node's line in view.
    let h = inner.height as usize;
    let sel_line = app
        .selected
        .and_then(|s| placed.iter().find(|p| p.node == s))
        .map_or(0, |p| p.line);
    let offset = if sel_line + 2 <= h {
        0
    } else {
        (sel_line + 2 - h / 2).min(lines.len().saturating_sub(h))
    };
    let mut hits = app.hits.borrow_mut();
    for p in &placed {
        if p.line >= offset && p.line < offset + h && p.col < width {
            hits.push((
                Rect {
                    x: inner.x + p.col as u16,
                    y: inner.y + (p.line - offset) as u16,
                    width: p.width.min(width - p.col) as u16,
                    height: 1,
                },
                Hit::Node(p.node),
            ));
        }
    }
    f.render_widget(Paragraph::new(lines).scroll((offset as u16, 0)), inner);
}

/// The map's title. "Edges" are what the circuit file, the report and the README count: weight edges between
/// circuit nodes. The graph's other links (residual write → read, embedding, unembedding, q·k), which the edge
/// list shows by kind, are counted apart, as links, where the title has room.
pub fn map_title(app: &App, width: usize) -> String {
    let kinds = app.circuit.graph.edge_counts_by_kind();
    let weight = kinds.get("Weight").copied().unwrap_or(0);
    let links = app.circuit.graph.edge_count();
    let long = format!(
        " circuit: {} nodes, {weight} edges ({links} links with residual, embedding, unembedding, q·k) · threshold {:.2} ",
        app.circuit.file.nodes.len(),
        app.threshold
    );
    if text_width(&long) <= width {
        return long;
    }
    format!(
        " circuit: {} nodes, {weight} edges · threshold {:.2} ",
        app.circuit.file.nodes.len(),
        app.threshold
    )
}

fn node_style(app: &App, t: &Theme, n: &NodeId) -> Style {
    if app.selected == Some(*n) {
        t.selected()
    } else if app.marks.contains(n) {
        t.marked()
    } else {
        t.node(app.circuit.importance(n))
    }
}

fn draw_losses(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let l = app.circuit.file.losses.halved();
    let warn = |v: f64| if v >= 0.5 { t.warn() } else { t.good() };
    let mut spans = vec![
        Span::raw("loss before pruning "),
        Span::styled(format!("{:.4}", l.full), warn(l.full)),
        Span::raw("  after "),
        Span::styled(format!("{:.4}", l.circuit), warn(l.circuit)),
    ];
    if l.circuit >= 0.5 {
        spans.push(Span::styled(" ⚠", t.warn()));
    }
    for (name, v) in [
        ("calibrated", l.calibrated),
        ("sufficiency", l.sufficiency),
        ("necessity", l.necessity),
    ] {
        if let Some(v) = v {
            spans.push(Span::styled(format!("  {name} {v:.4}"), t.dim()));
        }
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(" losses (halved, as the reference shows them) "),
        ),
        area,
    );
}

/// One edge as a line: direction, other end, weight, ablation delta.
pub fn edge_line(app: &App, e: &EdgeItem, selected: bool) -> Line<'static> {
    let t = &app.theme;
    let arrow = if e.incoming { "←" } else { "→" };
    let other = match e.other {
        GraphNode::Node(n) => {
            let label = app.annotations.get(&n).map(|a| a.label.clone()).unwrap_or_default();
            if label.is_empty() {
                n.to_string()
            } else {
                format!("{n} {label}")
            }
        }
        g => g.to_string(),
    };
    let kind = match e.edge.kind {
        crate::circuit::EdgeKind::Weight => "",
        crate::circuit::EdgeKind::Residual => " resid",
        crate::circuit::EdgeKind::Embed => " embed",
        crate::circuit::EdgeKind::Unembed => " unembed",
        crate::circuit::EdgeKind::QkInteraction => " q·k",
    };
    let delta = e
        .edge
        .ablation_delta
        .map(|d| format!(" Δ{:+.4}", halved(d)))
        .unwrap_or_default();
    let weight_style = if e.edge.kind == crate::circuit::EdgeKind::Weight {
        t.heat(e.edge.weight as f32, app.circuit.max_weight as f32)
    } else {
        t.dim()
    };
    let line = Line::from(vec![
        Span::raw(format!("{arrow} {other:<22} ")),
        Span::styled(format!("w{:+.3}", e.edge.weight), weight_style),
        Span::styled(format!("{kind}{delta}"), t.dim()),
    ]);
    if selected {
        line.patch_style(t.selected())
    } else {
        line
    }
}

/// The edge list with its cursor, recording mouse hits.
pub fn draw_edges(app: &App, f: &mut Frame, area: Rect, title: &str) {
    let t = &app.theme;
    let edges = app.edges();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(format!(
            " {title}: {} in, {} out (J/K f) ",
            edges.iter().filter(|e| e.incoming).count(),
            edges.iter().filter(|e| !e.incoming).count()
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let h = inner.height as usize;
    let sel = app.edge_sel.min(edges.len().saturating_sub(1));
    let offset = if sel < h { 0 } else { sel + 1 - h };
    let lines: Vec<Line> = edges
        .iter()
        .enumerate()
        .skip(offset)
        .take(h)
        .map(|(i, e)| edge_line(app, e, i == sel))
        .collect();
    let mut hits = app.hits.borrow_mut();
    for (row, i) in (offset..edges.len().min(offset + h)).enumerate() {
        hits.push((
            Rect {
                x: inner.x,
                y: inner.y + row as u16,
                width: inner.width,
                height: 1,
            },
            Hit::Edge(i),
        ));
    }
    drop(hits);
    if lines.is_empty() {
        // A feature of the SAE opened beside the model is not in the circuit's graph, so it has no weight edges.
        let why = match app.selected {
            Some(n) if n.is_feature() => "an SAE feature: no weight edges in the circuit",
            _ => "no edges above the threshold",
        };
        f.render_widget(Paragraph::new(Line::styled(why, t.dim())), inner);
    } else {
        f.render_widget(Paragraph::new(lines), inner);
    }
}

/// Summary lines of a node: id, head/channel, label, importance, marks, ablation.
pub fn node_summary(app: &App, n: &NodeId) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::from(vec![
        Span::styled(n.to_string(), t.title()),
        Span::styled(
            match n.head_channel(app.circuit.d_head) {
                Some((h, c)) => format!("  head {h}, channel {c}"),
                None if n.is_feature() => format!("  SAE latent {} at {}", n.index, n.hook()),
                None => format!("  channel {}", n.index),
            },
            t.dim(),
        ),
    ])];
    if let Some(a) = app.annotations.get(n) {
        if !a.label.is_empty() {
            lines.push(Line::from(format!("label: {}", a.label)));
        }
        if !a.is_empty() {
            let mut meta = format!("status: {}", a.status.name());
            if let Some(c) = a.confidence {
                meta.push_str(&format!(" · confidence {c:.2}"));
            }
            if !a.evidence.is_empty() {
                meta.push_str(&format!(" · {} evidence", a.evidence.len()));
            }
            lines.push(Line::from(meta));
        }
        if !a.tags.is_empty() {
            lines.push(Line::from(format!("tags: {}", a.tags.join(", "))));
        }
        for (i, c) in a.conflict.iter().enumerate() {
            lines.push(Line::styled(
                format!(
                    "label conflict {}) {} ({}) · :resolve {}",
                    i + 1,
                    c.label,
                    c.source,
                    i + 1
                ),
                t.accent(),
            ));
        }
        if !a.notes.is_empty() {
            lines.push(Line::from(format!("notes: {}", a.notes.replace('\n', " ¶ "))));
        }
    }
    if let Some(auto) = app.auto.get(n) {
        let unlabeled = app.annotations.get(n).is_none_or(|a| a.label.is_empty());
        let hint = if unlabeled { " · :accept" } else { "" };
        lines.push(Line::styled(
            format!("auto: {} ({}{hint})", auto.text, auto.score),
            t.dim(),
        ));
    }
    let cn = app.circuit.file.node(n);
    lines.push(Line::from(format!(
        "Δ when ablated {}   ablated loss {}",
        fmt_opt(app.circuit.node_delta(n)),
        fmt_opt(cn.and_then(|c| c.ablated_loss).map(halved))
    )));
    let mut flags = Vec::new();
    if app.marks.contains(n) {
        flags.push("marked".to_string());
    }
    if let Some(a) = app.lab.ablations.iter().find(|a| a.node == *n) {
        flags.push(format!("{}-ablated in the lab", a.kind.name()));
    }
    if !flags.is_empty() {
        lines.push(Line::styled(flags.join(" · "), t.marked()));
    }
    lines
}

fn draw_node_panel(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(n) = app.selected else {
        f.render_widget(
            Paragraph::new("the circuit has no nodes").block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let summary = node_summary(app, &n);
    // Wrapped, so that a narrow panel does not cut the numbers; each line takes the rows its width needs.
    let inner_w = area.width.saturating_sub(2).max(1) as usize;
    let rows: usize = summary.iter().map(|l| l.width().div_ceil(inner_w).max(1)).sum();
    let [top, rest] = Layout::vertical([Constraint::Length(rows as u16 + 2), Constraint::Min(3)]).areas(area);
    f.render_widget(
        Paragraph::new(summary)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(" selected (Enter inspects) "),
            ),
        top,
    );
    draw_edges(app, f, rest, "edges");
}
