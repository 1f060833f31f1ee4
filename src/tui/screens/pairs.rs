//! The A/B screen (`:pairs N`): every circuit node at the decision token of the task's two prompt classes,
//! averaged over N pairs (A, B and B − A, largest difference first), beside the attention of one of the
//! circuit's heads from the decision token on both prompts of one pair. The engine runs the pairs; this screen
//! only draws its numbers.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, Hit, Screen};
use crate::tui::widgets::{abs_max, fmt_val, heat_lines, HeatStrip};
use crate::workbench::{AttnRow, PairNodeRow, PairsView, Request};

/// How many pairs `:pairs` without a number runs.
pub const DEFAULT_PAIRS: usize = 16;

/// The screen's state: the engine's last answer, and what is selected in it.
#[derive(Default)]
pub struct PairsState {
    /// The engine's last pairs result (None: none asked for yet).
    pub view: Option<PairsView>,
    /// A request is on its way (the view, if any, is of an earlier one).
    pub pending: bool,
    /// How many pairs the last request asked for.
    pub n: usize,
    /// The selected row of the table (rows sorted by |B − A|).
    pub sel: usize,
    /// The pair whose attention is shown.
    pub pair: usize,
    /// The head whose attention is shown; None follows the selected node's head, else the first head.
    pub head: Option<(usize, usize)>,
}

/// What the screen's keys do (bound in [`crate::tui::keymap::BINDINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairsAction {
    /// Move the table selection by this many rows.
    Move(i64),
    /// Show the next (+1) or previous (−1) pair's attention.
    Pair(i64),
    /// Show the next (+1) or previous (−1) head.
    Head(i64),
    /// Run the pairs again under the lab's current ablations.
    Rerun,
}

/// Asks the engine for `n` pairs under the lab's ablations and shows the screen.
pub fn request(app: &mut App, n: usize) {
    app.pairs.n = n;
    app.pairs.pending = true;
    app.outbox.push(Request::Pairs {
        n,
        ablations: app.lab.ablations.clone(),
    });
    app.status = format!("running {n} task pairs…");
    app.set_screen(Screen::Pairs);
}

/// The table's rows: every node, largest |B − A| first (ties in circuit order).
pub fn rows(view: &PairsView) -> Vec<PairNodeRow> {
    let mut rows = view.nodes.clone();
    rows.sort_by(|x, y| {
        y.diff
            .abs()
            .total_cmp(&x.diff.abs())
            .then(x.node.forward_order().cmp(&y.node.forward_order()))
    });
    rows
}

/// The head whose attention is shown: the chosen one, else the selected node's when it is a q/k/v node with a
/// head in the view, else the first.
pub fn shown_head(app: &App) -> Option<(usize, usize)> {
    let view = app.pairs.view.as_ref()?;
    if let Some(h) = app.pairs.head.filter(|h| view.heads.contains(h)) {
        return Some(h);
    }
    let d_head = app.circuit.d_head.max(1);
    app.selected
        .filter(|n| n.site.is_qkv())
        .and_then(|n| Some((n.layer?, n.index / d_head)))
        .filter(|h| view.heads.contains(h))
        .or_else(|| view.heads.first().copied())
}

fn step(i: usize, d: i64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (i as i64 + d).rem_euclid(len as i64) as usize
}

/// Runs a pairs screen key's action on the app.
pub fn perform(app: &mut App, a: PairsAction) {
    if a == PairsAction::Rerun {
        let n = if app.pairs.n == 0 { DEFAULT_PAIRS } else { app.pairs.n };
        request(app, n);
        return;
    }
    let Some(view) = app.pairs.view.as_ref() else {
        app.status = format!(":pairs N runs N task pairs (default {DEFAULT_PAIRS})");
        return;
    };
    match a {
        PairsAction::Move(d) => {
            let rows = rows(view);
            if rows.is_empty() {
                return;
            }
            let sel = (app.pairs.sel as i64 + d).clamp(0, rows.len() as i64 - 1) as usize;
            app.pairs.sel = sel;
            let node = rows[sel].node;
            // A head chosen by hand gives way to the newly selected node's head.
            app.pairs.head = None;
            app.select(node);
        }
        PairsAction::Pair(d) => app.pairs.pair = step(app.pairs.pair, d, view.pairs.len()),
        PairsAction::Head(d) => {
            let heads = view.heads.clone();
            let cur = shown_head(app)
                .and_then(|h| heads.iter().position(|x| *x == h))
                .unwrap_or(0);
            app.pairs.head = heads.get(step(cur, d, heads.len())).copied();
        }
        PairsAction::Rerun => {}
    }
}

/// Draws the pairs table and the chosen pair's attention, recording table rows as click targets.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(view) = &app.pairs.view else {
        let msg = if app.pairs.pending {
            "running the task pairs…".to_string()
        } else {
            format!(
                ":pairs N runs N of the task's pairs (default {DEFAULT_PAIRS}) and compares every node at the decision \
                 token, class A against class B"
            )
        };
        f.render_widget(
            Paragraph::new(Line::styled(msg, t.dim()))
                .wrap(Wrap { trim: true })
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .border_style(t.border())
                        .title(" A/B pairs "),
                ),
            area,
        );
        return;
    };
    // The table keeps its numbers whole: on a narrow window it takes what its columns need and the attention
    // pane the rest.
    let needed = node_width(view) as u16 + 3 * 9 + 2;
    let left_w = if area.width >= 110 {
        area.width * 55 / 100
    } else {
        needed.min(area.width.saturating_sub(24))
    };
    let [left, right] = Layout::horizontal([Constraint::Length(left_w), Constraint::Min(1)]).areas(area);
    draw_table(app, view, f, left);
    draw_attention(app, view, f, right);
}

fn draw_table(app: &App, view: &PairsView, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let ablated = if view.ablations.is_empty() {
        String::new()
    } else {
        format!(" · {} ablated", view.ablations.len())
    };
    let pending = if app.pairs.pending { " · updating" } else { "" };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(format!(
            " {} {} pairs at the decision token{ablated}{pending} ",
            view.pairs.len(),
            view.task
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = rows(view);
    let h = inner.height.saturating_sub(1) as usize;
    let sel = app.pairs.sel.min(rows.len().saturating_sub(1));
    let offset = if sel < h { 0 } else { sel + 1 - h };
    let scale = abs_max(rows.iter().map(|r| &r.diff));
    let nw = node_width(view);
    let mut lines = vec![Line::styled(
        format!("{:<nw$} {:>8} {:>8} {:>8}  label", "node", "A", "B", "B−A"),
        t.dim(),
    )];
    let mut hits = app.hits.borrow_mut();
    for (i, r) in rows.iter().enumerate().skip(offset).take(h) {
        let label = app
            .annotations
            .get(&r.node)
            .map(|a| a.label.clone())
            .unwrap_or_default();
        let mut line = Line::from(vec![
            Span::raw(format!(
                "{:<nw$} {:>8} {:>8} ",
                r.node.to_string(),
                fmt_val(r.a),
                fmt_val(r.b)
            )),
            Span::styled(format!("{:>8}", fmt_val(r.diff)), t.heat(r.diff, scale)),
            Span::raw(format!("  {label}")),
        ]);
        if i == sel {
            line = line.patch_style(t.selected());
        }
        hits.push((
            Rect {
                x: inner.x,
                y: inner.y + 1 + (i - offset) as u16,
                width: inner.width,
                height: 1,
            },
            Hit::Node(r.node),
        ));
        lines.push(line);
    }
    drop(hits);
    if view.pairs.is_empty() {
        lines.push(Line::styled("no pair ran (the task's pairs are one-sided?)", t.warn()));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_attention(app: &App, view: &PairsView, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let pair_i = app.pairs.pair.min(view.pairs.len().saturating_sub(1));
    let head = shown_head(app);
    let title = match head {
        Some((l, h)) if area.width >= 50 => format!(
            " head {l}.h{h} from the decision token · pair {}/{} ",
            pair_i + 1,
            view.pairs.len()
        ),
        Some((l, h)) => format!(" {l}.h{h} · pair {}/{} ", pair_i + 1, view.pairs.len()),
        None => " attention ".into(),
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(pair) = view.pairs.get(pair_i) else { return };
    let mut lines: Vec<Line<'static>> = Vec::new();
    if let Some((a, b)) = pair.logit_diff {
        lines.push(Line::styled(format!("A−B logit: on A {a:+.3} · on B {b:+.3}"), t.dim()));
    }
    let Some(head) = head else {
        lines.push(Line::styled(
            "the circuit has no q, k or v nodes: no head to show",
            t.dim(),
        ));
        f.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let Some((ra, rb)) = pair.attention.get(&head) else {
        f.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let room = (inner.height as usize).saturating_sub(lines.len() + 2) / 2;
    for (name, tokens, row) in [("A", &pair.tokens_a, ra), ("B", &pair.tokens_b, rb)] {
        lines.push(Line::from(vec![
            Span::styled(format!("{name} "), t.title()),
            Span::styled(attention_caption(row), t.dim()),
        ]));
        let strip = HeatStrip {
            tokens,
            acts: &row.weights,
            scale: abs_max(row.weights.iter()),
            pivot: None,
            cursor: Some(tokens.len().saturating_sub(1)),
            window: None,
        };
        let (strip_lines, _) = heat_lines(&strip, t, inner.width as usize, usize::MAX);
        // The decision token is at the end: keep the strip's last lines when it does not fit.
        let skip = strip_lines.len().saturating_sub(room.max(1));
        lines.extend(strip_lines.into_iter().skip(skip));
    }
    // The strips are cut to the width already; the captions wrap on a narrow pane.
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// The width of the table's node column: the longest node id.
fn node_width(view: &PairsView) -> usize {
    view.nodes
        .iter()
        .map(|r| r.node.to_string().len())
        .max()
        .unwrap_or(4)
        .max(4)
}

/// "sink 0.42 · max 0.31 at token 7": what the decision token gives the sink and its largest weight.
fn attention_caption(row: &AttnRow) -> String {
    let top = row
        .weights
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .map(|(i, w)| format!(" · max {w:.2} at token {i}"))
        .unwrap_or_default();
    format!("sink {:.2}{top}", row.sink)
}
