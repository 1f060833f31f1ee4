//! The Heads screen (the framework lens, Elhage et al. 2021): the layer × head grid coloured by one score
//! (induction, previous-token, OV copying, sink share; `s` cycles), the selected head's composition with every
//! head of the other layers as a heat map (Q, K or V; `c` cycles), its QK and OV circuits' top token pairs, and
//! its whole attention pattern on the lab's prompt as a T×T map. The engine computes the numbers
//! ([`HeadsView`]); Enter opens the head's q/k/v channels on the circuit map.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::circuit::NodeId;
use crate::tui::app::{App, Screen};
use crate::tui::widgets::{fmt_val, text_width, token_cell, token_label, truncate_to_width};
use crate::workbench::{AttnPattern, HeadRow, HeadsView, Request};

/// The score the grid is coloured by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadScore {
    /// The induction detector (TransformerLens' `head_detector`) on repeated random sequences.
    #[default]
    Induction,
    /// The previous-token detector.
    PreviousToken,
    /// The OV copying score.
    Copying,
    /// The sink's share of attention (models with sinks).
    SinkShare,
}

impl HeadScore {
    /// The next score (`s`).
    pub fn next(self) -> HeadScore {
        match self {
            HeadScore::Induction => HeadScore::PreviousToken,
            HeadScore::PreviousToken => HeadScore::Copying,
            HeadScore::Copying => HeadScore::SinkShare,
            HeadScore::SinkShare => HeadScore::Induction,
        }
    }

    /// The name the grid's title shows.
    pub fn name(self) -> &'static str {
        match self {
            HeadScore::Induction => "induction",
            HeadScore::PreviousToken => "previous-token",
            HeadScore::Copying => "OV copying",
            HeadScore::SinkShare => "sink share",
        }
    }

    /// The head's value of this score (None: the model has no sinks).
    pub fn of(self, h: &HeadRow) -> Option<f32> {
        match self {
            HeadScore::Induction => Some(h.induction),
            HeadScore::PreviousToken => Some(h.previous_token),
            HeadScore::Copying => Some(h.copying),
            HeadScore::SinkShare => h.sink_share,
        }
    }
}

/// The composition kinds, in the order of [`HeadsView::composition`].
const COMPOSITION: [&str; 3] = ["Q", "K", "V"];

/// The screen's state: the engine's last view and what is selected in it.
pub struct HeadsState {
    /// The engine's last reply: every head's scores and its attention on the prompt it was asked for.
    pub view: Option<HeadsView>,
    /// A request is on its way.
    pub pending: bool,
    /// The selected head's layer (below the view's layer count).
    pub layer: usize,
    /// The selected head within its layer.
    pub head: usize,
    /// The score that colours the grid.
    pub score: HeadScore,
    /// The composition kind of the heat map: 0 Q, 1 K, 2 V. It opens on K, the composition that makes induction
    /// heads (a previous-token head's output read by a later head's keys).
    pub composition: usize,
}

impl Default for HeadsState {
    fn default() -> Self {
        HeadsState {
            view: None,
            pending: false,
            layer: 0,
            head: 0,
            score: HeadScore::default(),
            composition: 1,
        }
    }
}

/// What the screen's keys do (bound in [`crate::tui::keymap::BINDINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadsAction {
    /// Move the selection by (layers, heads).
    Move(i64, i64),
    /// Colour the grid by the next score.
    CycleScore,
    /// Show the next composition kind.
    CycleComposition,
    /// Recompute the attention patterns on the lab's current prompt.
    Refresh,
    /// Open the selected head's q/k/v channels on the circuit map.
    Open,
}

/// Applies one of the screen's key actions.
pub fn perform(app: &mut App, a: HeadsAction) {
    match a {
        HeadsAction::Move(dl, dh) => {
            let (l, h) = app
                .heads
                .view
                .as_ref()
                .map_or((1, 1), |v| (v.n_layers.max(1), v.n_heads.max(1)));
            app.heads.layer = (app.heads.layer as i64 + dl).clamp(0, l as i64 - 1) as usize;
            app.heads.head = (app.heads.head as i64 + dh).clamp(0, h as i64 - 1) as usize;
        }
        HeadsAction::CycleScore => {
            app.heads.score = app.heads.score.next();
            let missing = app
                .heads
                .view
                .as_ref()
                .is_some_and(|v| v.heads.iter().all(|h| h.sink_share.is_none()));
            if app.heads.score == HeadScore::SinkShare && missing {
                app.status = "this model has no attention sinks: no sink share".into();
            }
        }
        HeadsAction::CycleComposition => app.heads.composition = (app.heads.composition + 1) % COMPOSITION.len(),
        HeadsAction::Refresh => request(app),
        HeadsAction::Open => open_channels(app),
    }
}

/// Asks the engine for the view on the lab's prompt.
pub fn request(app: &mut App) {
    app.heads.pending = true;
    app.outbox.push(Request::Heads {
        text: app.prompt_text(),
    });
}

/// On entering the screen: a view of the lab's prompt as it is now, unless one is there or on its way.
pub fn ensure(app: &mut App) {
    let current = app.heads.view.as_ref().is_some_and(|v| v.text == app.prompt_text());
    if !current && !app.heads.pending {
        request(app);
    }
}

/// The circuit's q/k/v nodes of the selected head, in forward order.
pub fn head_channels(app: &App) -> Vec<NodeId> {
    let (l, h, dh) = (app.heads.layer, app.heads.head, app.circuit.d_head.max(1));
    let mut nodes: Vec<NodeId> = app
        .circuit
        .file
        .node_ids()
        .into_iter()
        .filter(|n| n.site.is_qkv() && n.layer == Some(l) && n.index / dh == h)
        .collect();
    nodes.sort_by_key(|n| n.forward_order());
    nodes
}

fn open_channels(app: &mut App) {
    let nodes = head_channels(app);
    let name = format!("L{}H{}", app.heads.layer, app.heads.head);
    match nodes.first() {
        Some(&first) => {
            app.jump(first);
            app.set_screen(Screen::Map);
            let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
            app.status = format!("{name}'s channels in the circuit: {}", list.join(" "));
        }
        None => app.status = format!("{name} has no q/k/v channels in this circuit"),
    }
}

/// Draws the screen into `area`: the score grid, the selected head's tables and composition, its attention map.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(v) = &app.heads.view else {
        let msg = if app.heads.pending {
            "computing the framework lens on every head…"
        } else {
            "no view yet (R computes it)"
        };
        f.render_widget(
            Paragraph::new(Line::styled(msg, t.dim())).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(" heads "),
            ),
            area,
        );
        return;
    };
    let sel = (
        app.heads.layer.min(v.n_layers.saturating_sub(1)),
        app.heads.head.min(v.n_heads.saturating_sub(1)),
    );
    let grid_h = v.n_layers as u16 + 4;
    let [top, bottom] = Layout::vertical([Constraint::Length(grid_h), Constraint::Min(3)]).areas(area);
    let grid_w = (GRID_LABEL + CELL * v.n_heads + 2).max(38) as u16;
    let [grid, comp] = Layout::horizontal([Constraint::Length(grid_w), Constraint::Fill(1)]).areas(top);
    draw_grid(app, f, grid, v, sel);
    draw_composition(app, f, comp, v, sel);
    let tables_w = if bottom.width < 110 { 38 } else { 46 };
    let [tables, attn] = Layout::horizontal([Constraint::Length(tables_w), Constraint::Fill(1)]).areas(bottom);
    let [qk, ov] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(tables);
    if let Some(row) = v.head(sel.0, sel.1) {
        // A bounded scan's table is the best of the rows it multiplied out, not proven the matrix's best.
        let title = |name: &str, partial: Option<(usize, usize)>| match partial {
            None => format!(" {name} "),
            Some((scanned, rows)) => format!(" {name} ≈ ({scanned} of {rows} rows) "),
        };
        draw_table(app, f, qk, &title("QK: query → key", row.qk_partial), &row.qk_top);
        draw_table(app, f, ov, &title("OV: source → promoted", row.ov_partial), &row.ov_top);
    }
    draw_attention(app, f, attn, v, sel);
}

/// Width of a grid row's layer label and of one cell.
const GRID_LABEL: usize = 3;
const CELL: usize = 4;

/// A score in three characters: `.93`, `1.0`, `-.4`, `  -` for none.
fn short(x: Option<f32>) -> String {
    match x {
        None => "  -".into(),
        Some(x) if !x.is_finite() => "nan".into(),
        Some(x) if x >= 0.995 => format!("{:>3}", format!("{x:.1}")).chars().take(3).collect(),
        Some(x) if x <= -0.995 => "-1+".into(),
        Some(x) => {
            let s = format!("{:.2}", x.abs());
            let s = s.trim_start_matches('0');
            if x < 0.0 {
                format!("-{}", &s[..2.min(s.len())])
            } else {
                format!("{s:>3}")
            }
        }
    }
}

/// A layer × head grid of values, the selected head boxed in brackets.
fn grid_lines(
    app: &App,
    v: &HeadsView,
    sel: (usize, usize),
    value: impl Fn(usize, usize) -> Option<f32>,
    scale: f32,
) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(
        format!(
            "{:GRID_LABEL$}{}",
            "",
            (0..v.n_heads)
                .map(|h| format!("{:>3} ", format!("h{h}")))
                .collect::<String>()
        ),
        t.dim(),
    )];
    for l in 0..v.n_layers {
        let mut spans = vec![Span::styled(format!("L{l:<2}"), t.dim())];
        for h in 0..v.n_heads {
            let x = value(l, h);
            let style = if (l, h) == sel {
                t.selected()
            } else {
                t.heat(x.unwrap_or(0.0), scale)
            };
            spans.push(Span::styled(short(x), style));
            spans.push(Span::raw(" "));
        }
        lines.push(Line::from(spans));
    }
    lines
}

fn draw_grid(app: &App, f: &mut Frame, area: Rect, v: &HeadsView, sel: (usize, usize)) {
    let t = &app.theme;
    let score = app.heads.score;
    let mut lines = grid_lines(app, v, sel, |l, h| v.head(l, h).and_then(|r| score.of(r)), 1.0);
    if let Some(r) = v.head(sel.0, sel.1) {
        let mut summary = format!(
            "ind {} prev {} copy {}",
            short(Some(r.induction)),
            short(Some(r.previous_token)),
            short(Some(r.copying))
        );
        if let Some(s) = r.sink_share {
            summary.push_str(&format!(" sink {}", short(Some(s))));
        }
        lines.push(Line::styled(summary, t.text()));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(format!(" {} (s) ", score.name())),
        ),
        area,
    );
}

fn draw_composition(app: &App, f: &mut Frame, area: Rect, v: &HeadsView, sel: (usize, usize)) {
    let t = &app.theme;
    let kind = app.heads.composition;
    let value = |l: usize, h: usize| v.composition_between(kind, sel, (l, h));
    let scale = (0..v.n_layers)
        .flat_map(|l| (0..v.n_heads).map(move |h| (l, h)))
        .filter_map(|(l, h)| value(l, h))
        .fold(0f32, f32::max);
    let mut lines = grid_lines(app, v, sel, value, scale);
    let (mean, std) = v.baseline;
    lines.push(Line::styled(
        format!("random baseline {mean:.3} ± {std:.3} · same layer: -"),
        t.dim(),
    ));
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(format!(
                    " L{}H{} {}-composition with earlier / later heads (c) ",
                    sel.0, sel.1, COMPOSITION[kind]
                )),
        ),
        area,
    );
}

fn draw_table(app: &App, f: &mut Frame, area: Rect, title: &str, rows: &[(String, String, f32)]) {
    let t = &app.theme;
    let inner = area.width.saturating_sub(2) as usize;
    // from (w) → to (w) value (7)
    let w = (inner.saturating_sub(3 + 8) / 2).max(3);
    let cell = |s: &str| token_cell(s, w);
    let lines: Vec<Line> = if rows.is_empty() {
        vec![Line::styled("no entries", t.dim())]
    } else {
        rows.iter()
            .map(|(a, b, x)| {
                Line::from(vec![
                    Span::styled(cell(a), t.text()),
                    Span::styled(" → ", t.dim()),
                    Span::styled(cell(b), t.text()),
                    Span::styled(format!(" {:>7}", fmt_val(*x)), t.accent()),
                ])
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(title.to_string()),
        ),
        area,
    );
}

/// The mean of `p`'s weights over queries `q0..q1` and keys `k0..k1` (keys above the diagonal count as zero).
fn block_mean(p: &AttnPattern, (q0, q1): (usize, usize), (k0, k1): (usize, usize)) -> f32 {
    let n = ((q1 - q0) * (k1 - k0)).max(1) as f32;
    (q0..q1)
        .map(|q| (k0..k1).map(|k| p.weights[q * p.t + k]).sum::<f32>())
        .sum::<f32>()
        / n
}

fn draw_attention(app: &App, f: &mut Frame, area: Rect, v: &HeadsView, sel: (usize, usize)) {
    let t = &app.theme;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(format!(
            " L{}H{} attention on the lab's prompt (rows: queries, R: refresh) ",
            sel.0, sel.1
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(p) = v.pattern(sel.0, sel.1).filter(|p| p.t > 0) else {
        f.render_widget(Paragraph::new(Line::styled("no pattern", t.dim())), inner);
        return;
    };
    let sink = p.sink.iter().any(|s| *s > 0.0);
    const LABEL: usize = 9;
    let sink_w = if sink { 5 } else { 0 };
    let avail_w = (inner.width as usize).saturating_sub(LABEL + sink_w).max(1);
    let avail_h = (inner.height as usize).saturating_sub(1).max(1);
    let cols = p.t.min(avail_w);
    let cell_w = (avail_w / cols).clamp(1, 3);
    let rows = p.t.min(avail_h);
    // Bins of positions: row r covers queries r·T/rows .. (r+1)·T/rows, and so on for columns.
    let bin = |i: usize, n: usize| (i * p.t / n, ((i + 1) * p.t / n).max(i * p.t / n + 1));
    let mut lines = Vec::new();
    for r in 0..rows {
        let (q0, q1) = bin(r, rows);
        let label = if q1 - q0 == 1 {
            let tok = v.tokens.get(q0).map_or(String::new(), |s| token_label(s));
            format!("{q0:>3} {}", truncate_to_width(&tok, LABEL - 5))
        } else {
            format!("{q0:>3}-{:<3}", q1 - 1)
        };
        let pad = LABEL.saturating_sub(text_width(&label));
        let mut spans = vec![Span::styled(format!("{label}{}", " ".repeat(pad)), t.dim())];
        if sink {
            let s = p.sink[q0..q1].iter().sum::<f32>() / (q1 - q0) as f32;
            spans.push(Span::styled(format!("{:>3}", short(Some(s))), t.heat(s, 1.0)));
            spans.push(Span::styled("│ ", t.dim()));
        }
        for c in 0..cols {
            let x = block_mean(p, (q0, q1), bin(c, cols));
            spans.push(Span::styled(" ".repeat(cell_w), t.heat(x, 1.0)));
        }
        lines.push(Line::from(spans));
    }
    let per = p.t.div_ceil(cols);
    let axis = format!(
        "{:w$}keys 0..{}{}{}",
        "",
        p.t - 1,
        if per > 1 {
            format!(", ~{per} per cell")
        } else {
            String::new()
        },
        if sink { " · left: sink share" } else { "" },
        w = LABEL + sink_w
    );
    lines.push(Line::styled(axis, t.dim()));
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_fit_three_characters() {
        for (x, want) in [
            (Some(0.934), ".93"),
            (Some(0.05), ".05"),
            (Some(1.0), "1.0"),
            (Some(-0.41), "-.4"),
            (None, "  -"),
            (Some(0.0), ".00"),
        ] {
            assert_eq!(short(x), want, "{x:?}");
        }
        assert_eq!(HeadScore::Induction.next().next().next().next(), HeadScore::Induction);
    }

    #[test]
    fn block_means_average_a_bin() {
        let p = AttnPattern {
            t: 2,
            weights: vec![1.0, 0.0, 0.25, 0.75],
            sink: vec![0.0; 2],
        };
        assert_eq!(block_mean(&p, (0, 2), (0, 2)), 0.5);
        assert_eq!(block_mean(&p, (1, 2), (1, 2)), 0.75);
    }
}
