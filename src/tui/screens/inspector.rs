//! The node inspector: the node's numbers and edges; its exemplars at each quantile as token heat maps on one
//! signed scale with the pivot reversed (`⟦ ⟧` without colours); the task view (class A, class B, B − A); a histogram; the head's
//! attention on the lab's prompt for q/k nodes (with the sink's share); the embedding and unembedding tokens
//! of residual channels.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::map::{draw_edges, node_summary};
use crate::circuit::{NodeId, Site};
use crate::tui::app::{App, Screen};
use crate::tui::widgets::{
    abs_max, fmt_val, heat_lines, histogram_sparkline, text_width, token_label, window_around, HeatStrip,
};
use crate::workbench::{NodeDetail, TokenActs};

/// Exemplars shown per side and quantile.
const PER_SIDE: usize = 5;

/// The inspector's state: which exemplar quantile it shows, its scroll, the task view's colour scale.
#[derive(Debug)]
pub struct InspectorState {
    /// Which of the node's exemplar quantiles is shown, taken modulo their count when drawn (so it may grow freely).
    pub quantile: usize,
    /// The inspector's first shown line; reset when the selection changes.
    pub scroll: usize,
    /// Colour the task view on a scale centred on zero (else min to max).
    pub zero_centre: bool,
}

impl Default for InspectorState {
    fn default() -> Self {
        InspectorState {
            quantile: 0,
            scroll: 0,
            zero_centre: true,
        }
    }
}

/// What the inspector's own keys do (the edge and annotation keys are [`super::graph`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectorAction {
    /// Scroll by this many lines (negative: up).
    Scroll(i64),
    /// Shows the next exemplar quantile (wrapping).
    NextQuantile,
    /// Shows the previous exemplar quantile.
    PrevQuantile,
    /// Switches the task view's colour scale between zero-centred and min to max.
    ToggleZeroCentre,
    /// Back to the circuit map.
    BackToMap,
}

/// Runs an inspector key's action on the app.
pub fn perform(app: &mut App, a: InspectorAction) {
    let st = &mut app.inspector;
    match a {
        InspectorAction::Scroll(d) => st.scroll = (st.scroll as i64 + d).max(0) as usize,
        InspectorAction::NextQuantile => st.quantile += 1,
        InspectorAction::PrevQuantile => st.quantile = st.quantile.saturating_sub(1),
        InspectorAction::ToggleZeroCentre => st.zero_centre = !st.zero_centre,
        InspectorAction::BackToMap => app.set_screen(Screen::Map),
    }
}

/// Draws the selected node's inspector (a wait message until its details arrive).
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(n) = app.selected else {
        f.render_widget(Paragraph::new("no node selected"), area);
        return;
    };
    let [left, right] = Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let detail = app.details.get(&n);
    let mut head = node_summary(app, &n);
    head.extend(stats_lines(app, detail));
    let histogram = detail.and_then(|d| d.stats.as_ref()).and_then(|s| s.histogram.as_ref());
    let head_h = (head.len() as u16 + 2 + u16::from(histogram.is_some())).min(left.height / 2);
    let [top, edges, extra] = Layout::vertical([
        Constraint::Length(head_h),
        Constraint::Min(4),
        Constraint::Length(extra_height(&n, left.height)),
    ])
    .areas(left);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(" node ");
    let inner = block.inner(top);
    f.render_widget(block, top);
    // The histogram takes the row below the text when the box has room for both (the text's rows counted
    // after wrapping), as the text's last line did.
    let text_rows: usize = head
        .iter()
        .map(|l| l.width().div_ceil(inner.width.max(1) as usize).max(1))
        .sum();
    let hist_rows = u16::from(histogram.is_some() && inner.height as usize > text_rows);
    let [text, hist_row] = Layout::vertical([Constraint::Min(0), Constraint::Length(hist_rows)]).areas(inner);
    f.render_widget(Paragraph::new(head).wrap(ratatui::widgets::Wrap { trim: false }), text);
    if let Some((lo, hi, counts)) = histogram.filter(|_| hist_rows > 0) {
        draw_histogram(app, f, hist_row, (*lo, *hi), counts);
    }
    draw_edges(app, f, edges, "edges");
    draw_extra(app, f, extra, &n, detail);
    draw_samples(app, f, right, &n, detail);
}

fn extra_height(n: &NodeId, h: u16) -> u16 {
    let want = match n.site {
        Site::AttnQ | Site::AttnK => 9,
        Site::Sae(_) => 10,
        Site::AttnActIn | Site::MlpActIn | Site::AttnResidDelta | Site::MlpResidDelta | Site::FinalResid => 8,
        _ => 0,
    };
    want.min(h / 3)
}

fn stats_lines(app: &App, detail: Option<&NodeDetail>) -> Vec<Line<'static>> {
    let t = &app.theme;
    match detail.and_then(|d| d.stats.as_ref()) {
        Some(s) => {
            let mut v = vec![Line::from(format!(
                "mean {}  density {:.4}  std {}",
                fmt_val(s.mean),
                s.density,
                fmt_val(s.std)
            ))];
            v.push(Line::from(format!("min {}  max {}", fmt_val(s.min), fmt_val(s.max))));
            v
        }
        None if detail.is_some() => vec![Line::styled(
            "no scan: mean, density, histogram need `circuitscope scan`",
            t.dim(),
        )],
        None => vec![Line::styled("loading…", t.dim())],
    }
}

/// The node's value histogram on one row: `lo`, a log-scaled sparkline of up to 24 columns, `hi`.
fn draw_histogram(app: &App, f: &mut Frame, area: Rect, (lo, hi): (f32, f32), counts: &[u64]) {
    let t = &app.theme;
    let lo = format!("{} ", fmt_val(lo));
    let hi = format!(" {}", fmt_val(hi));
    let (lo_w, hi_w) = (text_width(&lo) as u16, text_width(&hi) as u16);
    let bars_w = area.width.saturating_sub(lo_w + hi_w).min(24);
    let [lo_area, bars, hi_area] = Layout::horizontal([
        Constraint::Length(lo_w),
        Constraint::Length(bars_w),
        Constraint::Length(hi_w),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(Span::styled(lo, t.dim())), lo_area);
    f.render_widget(histogram_sparkline(counts, bars, t.title()), bars);
    f.render_widget(Paragraph::new(Span::styled(hi, t.dim())), hi_area);
}

/// Attention pattern (q/k) or vocabulary links (residual channels).
fn draw_extra(app: &App, f: &mut Frame, area: Rect, n: &NodeId, detail: Option<&NodeDetail>) {
    if area.height == 0 {
        return;
    }
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    let title;
    if matches!(n.site, Site::AttnQ | Site::AttnK) {
        let head = n.index / app.circuit.d_head.max(1);
        title = format!(" head {head} attention on the lab prompt ");
        match (&app.lab.run, n.layer) {
            (Some(run), Some(l)) => match run.attention.get(&(l, head)) {
                Some(p) => {
                    let q = app.lab.cursor_in(run).min(p.t.saturating_sub(1));
                    let row = p.row(q);
                    let (amax, arg) = row
                        .iter()
                        .enumerate()
                        .fold((0f32, 0usize), |(m, a), (j, &w)| if w > m { (w, j) } else { (m, a) });
                    lines.push(Line::from(format!(
                        "query {:?} (#{q}) · sink mass {:.3} · max {:.3} on {:?}",
                        token_label(&run.tokens[q]),
                        p.sink[q],
                        amax,
                        token_label(&run.tokens[arg])
                    )));
                    let strip = HeatStrip {
                        tokens: &run.tokens[..=q],
                        acts: row,
                        scale: amax.max(1e-6),
                        pivot: Some(q),
                        cursor: None,
                        window: Some(window_around(q + 1, q, 200)),
                    };
                    let (l2, _) = heat_lines(&strip, t, width, area.height.saturating_sub(3) as usize);
                    lines.extend(l2);
                }
                None => lines.push(Line::styled("no pattern for this head", t.dim())),
            },
            _ => lines.push(Line::styled("run a prompt in the lab (3)", t.dim())),
        }
    } else if n.is_feature() {
        title = " SAE feature: decoder direction through the vocabulary ".into();
        match detail {
            Some(d) if d.unembed_tokens.is_empty() => lines.push(Line::styled(
                "the SAE's hook is not in the residual basis: no direct vocabulary reading",
                t.dim(),
            )),
            Some(d) => {
                for (caption, list) in [
                    ("unembedding: promotes", &d.unembed_tokens),
                    ("suppresses", &d.suppressed_tokens),
                    ("embeddings along it", &d.embed_tokens),
                ] {
                    lines.push(Line::styled(format!("{caption}:"), t.dim()));
                    lines.push(Line::from(vocab_line(list)));
                }
            }
            None => lines.push(Line::styled("loading…", t.dim())),
        }
    } else {
        title = " residual channel: embedding writers · unembedding promotes ".into();
        match detail {
            Some(d) => {
                lines.push(Line::styled("embedding writes it:", t.dim()));
                lines.push(Line::from(vocab_line(&d.embed_tokens)));
                lines.push(Line::styled("unembedding promotes:", t.dim()));
                lines.push(Line::from(vocab_line(&d.unembed_tokens)));
            }
            None => lines.push(Line::styled("loading…", t.dim())),
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(title),
            ),
        area,
    );
}

/// Up to 8 (token, weight) pairs on one line.
fn vocab_line(v: &[(String, f32)]) -> String {
    v.iter()
        .take(8)
        .map(|(s, w)| format!("{:?} {:+.2}", token_label(s), w))
        .collect::<Vec<_>>()
        .join("  ")
}

/// One heat strip per sample: a caption and the wrapped tokens (two lines at most).
fn strip_lines(
    app: &App,
    s: &TokenActs,
    scale: f32,
    width: usize,
    caption: String,
    shift: f32,
    out: &mut Vec<Line<'static>>,
) {
    let t = &app.theme;
    let pivot = s.pivot.unwrap_or_else(|| argmax_abs(&s.acts));
    let value = s.acts.get(pivot).copied().unwrap_or(0.0);
    out.push(Line::from(vec![
        Span::styled(caption, t.dim()),
        Span::styled(
            format!(
                " {:?} = {}",
                token_label(s.tokens.get(pivot).map_or("", |x| x)),
                fmt_val(value)
            ),
            t.accent(),
        ),
    ]));
    let acts: Vec<f32> = s.acts.iter().map(|v| v - shift).collect();
    // About one line of context before the pivot and one after.
    let window = char_window(&s.tokens, pivot, width * 2 / 3, width * 4 / 3);
    let strip = HeatStrip {
        tokens: &s.tokens,
        acts: &acts,
        scale,
        pivot: Some(pivot),
        cursor: None,
        window: Some(window),
    };
    let (lines, _) = heat_lines(&strip, t, width, 2);
    out.extend(lines);
}

/// Tokens around `pivot` that take about `before` columns before it and `after` columns from it on.
fn char_window(tokens: &[String], pivot: usize, before: usize, after: usize) -> (usize, usize) {
    let w = |i: usize| text_width(&token_label(&tokens[i]));
    let mut start = pivot.min(tokens.len().saturating_sub(1));
    let mut used = 0;
    while start > 0 && used + w(start - 1) <= before {
        used += w(start - 1);
        start -= 1;
    }
    let mut end = pivot.min(tokens.len());
    let mut used = 0;
    while end < tokens.len() && used + w(end) <= after {
        used += w(end);
        end += 1;
    }
    (start, end.max((pivot + 1).min(tokens.len())))
}

fn argmax_abs(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, 0f32),
            |(a, m), (i, x)| if x.abs() > m { (i, x.abs()) } else { (a, m) },
        )
        .0
}

fn draw_samples(app: &App, f: &mut Frame, area: Rect, n: &NodeId, detail: Option<&NodeDetail>) {
    let t = &app.theme;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    let Some(d) = detail else {
        f.render_widget(
            Paragraph::new(Line::styled(format!("loading {n}…"), t.dim()))
                .block(Block::default().borders(Borders::ALL).border_style(t.border())),
            area,
        );
        return;
    };
    // Pretraining exemplars.
    if d.quantiles.is_empty() {
        lines.push(Line::styled("pretraining exemplars", t.title()));
        lines.push(Line::styled(
            "none: neither a scan nor the circuit file has exemplars for this node",
            t.dim(),
        ));
    } else {
        let qi = app.inspector.quantile % d.quantiles.len();
        let q = &d.quantiles[qi];
        let scale = abs_max(q.top.iter().chain(&q.bottom).flat_map(|e| e.acts.iter()));
        lines.push(Line::from(vec![
            Span::styled("pretraining exemplars ", t.title()),
            Span::styled(
                format!(
                    "quantile {} ({}/{}, n/N) · one scale ±{}",
                    fmt_quantile(q.quantile),
                    qi + 1,
                    d.quantiles.len(),
                    fmt_val(scale)
                ),
                t.dim(),
            ),
        ]));
        for (side, list) in [("top", &q.top), ("bottom", &q.bottom)] {
            for (i, e) in list.iter().take(PER_SIDE).enumerate() {
                strip_lines(app, e, scale, width, format!("{side} #{}", i + 1), 0.0, &mut lines);
            }
        }
    }
    // Task view.
    lines.push(Line::from(""));
    let tv = &d.task;
    if tv.class_a.is_empty() {
        lines.push(Line::styled("task view: no task pairs", t.dim()));
    } else {
        let all: Vec<f32> = tv
            .class_a
            .iter()
            .chain(&tv.class_b)
            .flat_map(|s| s.acts.iter().copied())
            .collect();
        let (shift, scale) = if app.inspector.zero_centre {
            (0.0, abs_max(all.iter()))
        } else {
            let lo = all.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = all.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            ((lo + hi) / 2.0, ((hi - lo) / 2.0).max(1e-6))
        };
        lines.push(Line::from(vec![
            Span::styled(format!("task view: {} ", app.task), t.title()),
            Span::styled(
                format!(
                    "{} pairs · {} (z) · class A/B ±{}",
                    tv.class_a.len(),
                    if app.inspector.zero_centre {
                        "zero-centred"
                    } else {
                        "min-max"
                    },
                    fmt_val(scale)
                ),
                t.dim(),
            ),
        ]));
        let dscale = abs_max(tv.diff.iter().flat_map(|s| s.acts.iter()));
        for (i, ((a, b), dd)) in tv.class_a.iter().zip(&tv.class_b).zip(&tv.diff).enumerate() {
            strip_lines(app, a, scale, width, format!("pair {} A", i + 1), shift, &mut lines);
            strip_lines(app, b, scale, width, format!("pair {} B", i + 1), shift, &mut lines);
            strip_lines(app, dd, dscale, width, format!("pair {} B−A", i + 1), 0.0, &mut lines);
        }
    }
    let h = area.height.saturating_sub(2) as usize;
    let scroll = app.inspector.scroll.min(lines.len().saturating_sub(h));
    f.render_widget(
        Paragraph::new(lines).scroll((scroll as u16, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(" samples (j/k scroll) "),
        ),
        area,
    );
}

fn fmt_quantile(q: f64) -> String {
    if q <= 0.0 {
        "extremes".into()
    } else {
        format!("{}%", q * 100.0)
    }
}
