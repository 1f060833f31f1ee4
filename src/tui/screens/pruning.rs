//! The pruning screen (the reference viewer's loss line, faithfulness-at-k and pruning-loss plots and
//! prune_config dump): the circuit file's losses halved with accuracies, the pruning-loss curve on a log-y axis,
//! the bisection's loss against k on log-log axes with the full model's loss and the target marked, and
//! `prune_config` as JSON. Circuits that did not record these (e.g. imported ones) say "not recorded".

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::circuit::halved;
use crate::tui::app::App;

/// Losses at or above this (halved) are drawn in the warning style, as in the reference viewer.
const WARN_AT: f64 = 0.5;

/// The pruning screen's state: the prune_config pane's scroll.
#[derive(Debug, Default)]
pub struct PruningState {
    /// The prune config pane's first shown line.
    pub scroll: usize,
}

/// What the pruning screen's keys do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruningAction {
    /// Scroll by this many lines (negative: up).
    Scroll(i64),
    /// Scrolls back to the top.
    Top,
}

/// Runs a pruning screen key's action on the app.
pub fn perform(app: &mut App, a: PruningAction) {
    app.pruning.scroll = match a {
        PruningAction::Scroll(d) => (app.pruning.scroll as i64 + d).max(0) as usize,
        PruningAction::Top => 0,
    };
}

/// Draws the pruning run: its losses, its prune config, the loss curve and the faithfulness pane.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let [losses, config] = Layout::vertical([Constraint::Length(9), Constraint::Min(3)]).areas(left);
    let [curve, faith] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    draw_losses(app, f, losses);
    draw_config(app, f, config);
    draw_curve(app, f, curve);
    draw_faithfulness(app, f, faith);
}

fn boxed<'a>(app: &App, title: String) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border())
        .title(title)
}

fn draw_losses(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let file = &app.circuit.file;
    let l = file.losses.halved();
    let acc = |a: Option<f64>| a.map_or(String::new(), |a| format!("  acc {:5.1}%", a * 100.0));
    let mut lines = vec![Line::from(vec![
        Span::raw(format!("k = {} ", file.nodes.len())),
        Span::styled(
            format!("of {} nodes · {}", file.model.num_total_nodes, file.source),
            t.dim(),
        ),
    ])];
    let rows: [(&str, Option<f64>, Option<f64>, bool); 5] = [
        ("full model", Some(l.full), l.full_accuracy, true),
        ("circuit", Some(l.circuit), l.circuit_accuracy, true),
        ("calibrated", l.calibrated, None, true),
        ("sufficiency", l.sufficiency, l.sufficiency_accuracy, true),
        // A high necessity loss is what a necessary circuit gives: no warning.
        ("necessity", l.necessity, l.necessity_accuracy, false),
    ];
    for (name, v, a, warn) in rows {
        let line = match v {
            Some(v) => {
                let style = if warn && v >= WARN_AT { t.warn() } else { t.good() };
                let mut spans = vec![
                    Span::raw(format!("{name:<12}")),
                    Span::styled(format!("{v:.4}"), style),
                    Span::raw(acc(a)),
                ];
                if warn && v >= WARN_AT {
                    spans.push(Span::styled(" ⚠", t.warn()));
                }
                Line::from(spans)
            }
            None => Line::from(vec![
                Span::raw(format!("{name:<12}")),
                Span::styled("not recorded", t.dim()),
            ]),
        };
        lines.push(line);
    }
    if let Some(n) = l.check_pairs {
        lines.push(Line::styled(
            format!("sufficiency / necessity on {n} held-out pairs"),
            t.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(boxed(app, " losses (halved, as the reference shows them) ".into())),
        area,
    );
}

fn draw_config(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(cfg) = &app.circuit.file.prune_config else {
        f.render_widget(
            Paragraph::new(Line::styled(
                "not recorded (no prune_config in this circuit file)",
                t.dim(),
            ))
            .block(boxed(app, " prune_config ".into())),
            area,
        );
        return;
    };
    let text = serde_json::to_string_pretty(cfg).unwrap_or_default();
    let lines: Vec<Line> = text.lines().map(|l| Line::raw(l.to_string())).collect();
    let inner_h = area.height.saturating_sub(2) as usize;
    let total = lines.len();
    let scroll = app.pruning.scroll.min(total.saturating_sub(inner_h));
    let title = if total > inner_h {
        format!(
            " prune_config {}-{} of {total} (j/k scroll) ",
            scroll + 1,
            (scroll + inner_h).min(total)
        )
    } else {
        " prune_config ".into()
    };
    f.render_widget(
        Paragraph::new(lines)
            .scroll((scroll as u16, 0))
            .block(boxed(app, title)),
        area,
    );
}

fn log10(v: f64) -> f64 {
    v.max(1e-12).log10()
}

/// An axis label for a log10 coordinate.
fn pow_label(x: f64) -> String {
    format!("{:.1e}", 10f64.powf(x))
}

/// Bounds of some values with a margin (a flat series gets ±0.5).
fn bounds(values: impl IntoIterator<Item = f64>) -> [f64; 2] {
    let (lo, hi) = values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    if hi - lo < 1e-9 {
        return [lo - 0.5, hi + 0.5];
    }
    let m = (hi - lo) * 0.05;
    [lo - m, hi + m]
}

fn not_recorded(app: &App, f: &mut Frame, area: Rect, title: &str, what: &str) {
    f.render_widget(
        Paragraph::new(Line::styled(format!("not recorded ({what})"), app.theme.dim()))
            .block(boxed(app, format!(" {title} "))),
        area,
    );
}

fn draw_curve(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let curve = &app.circuit.file.loss_curve;
    if curve.is_empty() {
        return not_recorded(app, f, area, "pruning loss", "no loss_curve in this circuit file");
    }
    // Halved like every task loss on screen (the curve records the raw task loss of each step).
    let data: Vec<(f64, f64)> = curve.iter().map(|&(s, l)| (s as f64, log10(halved(l)))).collect();
    // The x-axis spans exactly the recorded steps, so that its end and the title's step count are one number
    // (a margin made the axis end at 157 under a title of 150 steps).
    let (first, last_step) = (curve[0].0 as f64, curve[curve.len() - 1].0 as f64);
    let xb = if last_step > first {
        [first, last_step]
    } else {
        [first - 0.5, first + 0.5]
    };
    let yb = bounds(data.iter().map(|p| p.1));
    let last = curve.last().map_or(0.0, |p| halved(p.1));
    let chart = Chart::new(vec![Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.accent())
        .data(&data)])
    .block(boxed(
        app,
        format!(
            " pruning task loss (halved, log y) · {} · last {last:.4} ",
            steps_label(curve)
        ),
    ))
    .x_axis(
        Axis::default()
            .style(t.dim())
            .bounds(xb)
            .labels([format!("{first:.0}"), format!("step {last_step:.0}")]),
    )
    .y_axis(Axis::default().style(t.dim()).bounds(yb).labels([
        pow_label(yb[0]),
        pow_label((yb[0] + yb[1]) / 2.0),
        pow_label(yb[1]),
    ]));
    f.render_widget(chart, area);
}

/// The curve's length for its title: the last step's number, and how many points were recorded when that
/// differs (a curve recorded every few steps).
pub fn steps_label(curve: &[(usize, f64)]) -> String {
    let last = curve.last().map_or(0, |p| p.0);
    if curve.len() == last {
        format!("{last} steps")
    } else {
        format!("{last} steps, {} recorded", curve.len())
    }
}

/// The bisection's (k, raw loss) points from `prune_config.bisection`, sorted by k.
pub fn bisection(cfg: Option<&serde_json::Value>) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = cfg
        .and_then(|c| c.get("bisection"))
        .and_then(|b| b.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get("k")?.as_f64()?, p.get("loss")?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn draw_faithfulness(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let file = &app.circuit.file;
    let title = format!("faithfulness vs k (of {} nodes)", file.model.num_total_nodes);
    let pts = bisection(file.prune_config.as_ref());
    if pts.is_empty() {
        return not_recorded(app, f, area, &title, "no prune_config.bisection in this circuit file");
    }
    let data: Vec<(f64, f64)> = pts.iter().map(|&(k, l)| (log10(k), log10(halved(l)))).collect();
    let full = log10(halved(file.losses.full));
    let target = file
        .prune_config
        .as_ref()
        .and_then(|c| c.get("effective_target"))
        .and_then(|v| v.as_f64())
        .map(|v| log10(halved(v)));
    let circuit = [(log10(file.nodes.len() as f64), log10(halved(file.losses.circuit)))];
    let xb = bounds(data.iter().map(|p| p.0).chain([circuit[0].0]));
    let yb = bounds(data.iter().map(|p| p.1).chain([full, circuit[0].1]).chain(target));
    let full_line = [(xb[0], full), (xb[1], full)];
    let target_line = target.map(|y| [(xb[0], y), (xb[1], y)]);
    let mut sets = vec![Dataset::default()
        .name("full model")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.good())
        .data(&full_line)];
    if let Some(tl) = &target_line {
        sets.push(
            Dataset::default()
                .name("target")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(t.warn())
                .data(tl),
        );
    }
    sets.push(
        Dataset::default()
            .name("bisection")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.accent())
            .data(&data),
    );
    sets.push(
        Dataset::default()
            .name("circuit")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(t.title())
            .data(&circuit),
    );
    let chart = Chart::new(sets)
        .block(boxed(app, format!(" {title}, halved loss, log-log ")))
        .legend_position(Some(ratatui::widgets::LegendPosition::TopRight))
        .x_axis(Axis::default().style(t.dim()).bounds(xb).labels([
            format!("{:.0}", 10f64.powf(xb[0])),
            format!("k {:.0}", 10f64.powf(xb[1])),
        ]))
        .y_axis(Axis::default().style(t.dim()).bounds(yb).labels([
            pow_label(yb[0]),
            pow_label((yb[0] + yb[1]) / 2.0),
            pow_label(yb[1]),
        ]));
    f.render_widget(chart, area);
}
