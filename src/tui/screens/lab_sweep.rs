//! The lab's length-sweep pane: where the fragment goes, where the sweep stopped and why, a read-out at a chosen
//! insertion count, the selected and marked nodes' values at the last token overlaid, and the logit difference
//! with its zero line and flip point; both charts against the prompt's length in tokens.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::circuit::NodeId;
use crate::tui::app::App;
use crate::tui::theme::{ColorMode, Theme};
use crate::tui::widgets::{fmt_val, token_label, truncate_to_width};
use crate::workbench::SweepResult;

/// Most nodes overlaid (the selected one, then marked ones in order).
pub const MAX_SERIES: usize = 4;

/// The nodes the sweep chart overlays: the selected node, then the marked ones, at most [`MAX_SERIES`]; the
/// chart follows the selection without a new sweep, since a sweep measures every circuit node.
pub fn overlaid(app: &App) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = app.selected.into_iter().collect();
    v.extend(app.marks.iter().copied().filter(|m| Some(*m) != app.selected));
    v.truncate(MAX_SERIES);
    v
}

fn series_style(t: &Theme, i: usize) -> Style {
    match i % MAX_SERIES {
        0 => t.title(),
        1 => t.marked(),
        2 => t.good(),
        _ => t.accent(),
    }
}

/// Without colours the series differ by their dots.
fn series_marker(t: &Theme, i: usize) -> Marker {
    if t.mode != ColorMode::None {
        return Marker::Braille;
    }
    [Marker::Braille, Marker::Dot, Marker::Block, Marker::Bar][i % MAX_SERIES]
}

/// The insertion shown in its context: the text before it, `⟨FRAGMENT⟩×n`, the text after, newlines as ↵, cut
/// to `width` columns so that the insertion point stays in view.
pub fn preview(s: &SweepResult, width: usize) -> (String, String, String) {
    // Newlines and tabs made visible; an empty side stays empty (token_label would draw ∅).
    let visible = |t: &str| if t.is_empty() { String::new() } else { token_label(t) };
    let before = visible(&s.text[..s.at]);
    let after = visible(&s.text[s.at..]);
    let mid = format!("⟨{}⟩×n", token_label(&s.fragment));
    let room = width.saturating_sub(crate::tui::widgets::text_width(&mid));
    // At most two thirds of the room before, and the rest after.
    let after_w = room.saturating_sub(before.chars().count().min(room * 2 / 3));
    let after = truncate_to_width(&after, after_w);
    let before_w = room.saturating_sub(crate::tui::widgets::text_width(&after));
    let skip = before.chars().count().saturating_sub(before_w);
    let before: String = if skip > 0 {
        std::iter::once('…').chain(before.chars().skip(skip + 1)).collect()
    } else {
        before
    };
    (before, mid, after)
}

/// One line on where the sweep stopped (the context) or that it ran to the end, and where the prediction flips.
pub fn stop_line(s: &SweepResult) -> String {
    let last = s.points.last();
    let reach = match (s.stop, last) {
        (Some(st), Some(p)) => format!(
            "stopped at n={} ({} tokens): n={} makes {} > context {}",
            p.n, p.tokens, st.n, st.tokens, st.context
        ),
        (Some(st), None) => format!("n=0 is already {} tokens > context {}", st.tokens, st.context),
        (None, Some(p)) => format!("n=0..{}, {} tokens at n={}", p.n, p.tokens, p.n),
        (None, None) => "no points".into(),
    };
    match (s.flip(), s.points.first().and_then(|p| p.logit_diff)) {
        (Some(p), _) => format!("{reach} · A−B flips at n={} ({} tokens)", p.n, p.tokens),
        (None, Some(_)) => format!("{reach} · A−B keeps its sign"),
        (None, None) => reach,
    }
}

/// The read-out at point `i`: n, tokens, the logit difference and the top token.
pub fn readout_line(s: &SweepResult, i: usize) -> String {
    let Some(p) = s.points.get(i) else { return String::new() };
    let ld = p.logit_diff.map_or("—".into(), |d| format!("{d:+.3}"));
    format!(
        "at n={} ({} tokens): A−B {ld} · top {:?} {:.2}  (< > move)",
        p.n,
        p.tokens,
        token_label(&p.top),
        p.top_prob
    )
}

/// Draws the length sweep's pane and its read-out point (nothing when no sweep is shown).
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(s) = &app.lab.sweep else { return };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(format!(
            " sweep {:?} ×0..{} · x: prompt tokens ",
            token_label(&s.fragment),
            s.max_n
        ));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let nodes = overlaid(app);
    let at = app.lab.sweep_index(s);
    let (before, mid, after) = preview(s, inner.width as usize);
    let w = inner.width as usize;
    let mut text = vec![Line::from(vec![
        Span::styled(before, t.dim()),
        Span::styled(mid, t.accent()),
        Span::styled(after, t.dim()),
    ])];
    let stop_style = if s.stop.is_some() { t.warn() } else { t.dim() };
    text.extend(wrap(&stop_line(s), w).into_iter().map(|l| Line::styled(l, stop_style)));
    text.extend(wrap(&readout_line(s, at), w).into_iter().map(Line::from));
    for (i, n) in nodes.iter().enumerate() {
        let v = s.points.get(at).and_then(|p| p.values.get(n)).copied();
        text.push(Line::from(vec![
            Span::styled("■ ", series_style(t, i)),
            Span::raw(format!("{n} {}", v.map_or("—".into(), fmt_val))),
        ]));
    }
    let [lines, charts] = Layout::vertical([Constraint::Length(text.len() as u16), Constraint::Min(0)]).areas(inner);
    f.render_widget(Paragraph::new(text), lines);
    if s.points.is_empty() || charts.height < 4 {
        return;
    }
    let [a, b] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let x = |i: usize| s.points[i].tokens as f64;
    let x_hi = s.stop.map_or(x(s.points.len() - 1), |st| st.context as f64);
    let xb = [x(0), x_hi.max(x(0) + 1.0)];
    let axes = Axes {
        xb,
        at_x: x(at),
        context: s.stop.map(|st| st.context as f64),
    };
    let series: Vec<Series> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Series {
            style: series_style(t, i),
            marker: series_marker(t, i),
            data: s
                .points
                .iter()
                .filter_map(|p| Some((p.tokens as f64, *p.values.get(n)? as f64)))
                .collect(),
        })
        .collect();
    chart(app, f, a, " nodes at the last token ", &series, &axes, None);
    let diffs: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|p| Some((p.tokens as f64, p.logit_diff? as f64)))
        .collect();
    let flip = s.flip().and_then(|p| Some((p.tokens as f64, p.logit_diff? as f64)));
    let ld = [Series {
        style: t.title(),
        marker: Marker::Braille,
        data: diffs,
    }];
    chart(app, f, b, " logit diff A−B ", &ld, &axes, flip);
}

/// One line of a sweep chart: (prompt tokens, value) points.
struct Series {
    style: Style,
    marker: Marker,
    data: Vec<(f64, f64)>,
}

/// What both sweep charts share on their x-axis: its bounds, the read-out point, the context limit.
struct Axes {
    xb: [f64; 2],
    at_x: f64,
    /// The context, drawn when the sweep stopped there.
    context: Option<f64>,
}

/// `s` broken at spaces into lines of at most `width` columns (a longer word is cut), so that a narrow pane
/// shows every number whole.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    for word in s.split(' ') {
        let cur = lines.last_mut().expect("never empty");
        let sep = usize::from(!cur.is_empty());
        if crate::tui::widgets::text_width(cur) + sep + crate::tui::widgets::text_width(word) <= width {
            if sep == 1 {
                cur.push(' ');
            }
            cur.push_str(word);
        } else {
            lines.push(truncate_to_width(word, width));
        }
    }
    lines
}

/// A chart of `series` over the prompt length, with the zero line, the read-out point's column, the context
/// limit when the sweep stopped there, and `flip` marked.
fn chart(app: &App, f: &mut Frame, area: Rect, title: &str, series: &[Series], axes: &Axes, flip: Option<(f64, f64)>) {
    let t = &app.theme;
    let (xb, at_x) = (axes.xb, axes.at_x);
    let ys = series.iter().flat_map(|s| s.data.iter().map(|p| p.1));
    let lo = ys.clone().fold(0.0f64, f64::min);
    let hi = ys.fold(0.0f64, f64::max);
    let hi = if hi - lo < 1e-9 { lo + 1.0 } else { hi };
    let zero = [(xb[0], 0.0), (xb[1], 0.0)];
    let cursor = [(at_x, lo), (at_x, hi)];
    let limit = axes.context.map(|c| [(c, lo), (c, hi)]);
    let flip_pt = flip.map(|p| [p]);
    let mut sets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.dim())
            .data(&zero),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.dim())
            .data(&cursor),
    ];
    if let Some(l) = &limit {
        sets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(t.warn())
                .data(l),
        );
    }
    for s in series {
        sets.push(
            Dataset::default()
                .marker(s.marker)
                .graph_type(GraphType::Line)
                .style(s.style)
                .data(&s.data),
        );
    }
    if let Some(p) = &flip_pt {
        sets.push(
            Dataset::default()
                .marker(Marker::Block)
                .graph_type(GraphType::Scatter)
                .style(t.warn())
                .data(p),
        );
    }
    let c = Chart::new(sets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(title.to_string()),
        )
        .x_axis(Axis::default().bounds(xb).style(t.dim()).labels(vec![
            Span::raw(format!("{:.0}", xb[0])),
            Span::raw(format!("{:.0} tokens", xb[1])),
        ]))
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels(vec![Span::raw(format!("{lo:.2}")), Span::raw(format!("{hi:.2}"))])
                .style(t.dim()),
        );
    f.render_widget(c, area);
}
