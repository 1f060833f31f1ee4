//! The prompt lab: an editable prompt that re-runs the model as it changes; the selected node as a heat strip
//! over the tokens; every circuit node's magnitude at the cursor token against a pinned baseline; the next
//! tokens and the task's logit difference; ablations; the length sweep.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::circuit::NodeId;
use crate::tui::app::{App, Hit, Mode, BASELINE_ALIGNMENT};
use crate::tui::editor_view;
use crate::tui::widgets::{abs_max, fmt_val, heat_lines, token_label, HeatStrip};
use crate::workbench::{Ablation, AblationKind, RunSummary, SweepResult};

/// The lab's state: the runs the engine sent, the token cursor, the ablations and their undo history, the sweep.
#[derive(Default)]
pub struct LabState {
    /// The run shown: the latest reply to a run request (replies to older requests are dropped).
    pub run: Option<RunSummary>,
    /// The run the table compares against: the first run until one is pinned with `p`.
    pub baseline: Option<RunSummary>,
    /// The token the table reads; None follows the last token.
    pub cursor: Option<usize>,
    /// The ablations applied to every run, in the order they were toggled.
    pub ablations: Vec<Ablation>,
    /// Earlier sets of ablations, most recent last, for `u`.
    pub undo: Vec<Vec<Ablation>>,
    /// Sets undone by `u`, most recent last, for Ctrl-r; cleared by any new change.
    pub redo: Vec<Vec<Ablation>>,
    /// The last length sweep's result (None: none run, or hidden with `S`).
    pub sweep: Option<SweepResult>,
    /// The text the sweep inserts repeatedly at the editor's cursor (`:sweep FRAGMENT`).
    pub sweep_fragment: String,
    /// The largest number of insertions the sweep tries.
    pub sweep_max: usize,
    /// The sweep point read out (an index into the sweep's points; None: the last one).
    pub sweep_at: Option<usize>,
    /// The editor's first line in view, kept between frames.
    pub editor_top: Cell<usize>,
    /// Each circuit node's standard deviation over the scan corpus (empty without a scan).
    pub node_std: BTreeMap<NodeId, f32>,
    /// The magnitudes table sorts by the change in units of the node's scan standard deviation.
    pub sort_by_std: bool,
    /// The highlighted row of the magnitudes table (an index into [`App::magnitudes`]).
    pub table_sel: usize,
    /// The pinned baseline's prompt (what a session keeps; the run itself may still be on its way).
    pub pinned_text: Option<String>,
    /// The id of a run whose reply becomes the baseline (a restored pinned prompt).
    pub pin_pending: Option<u64>,
    /// The last ablation change and its measured effect, for "attach evidence".
    pub last_ablation: Option<crate::session::Evidence>,
    /// When the prompt last changed without a run being sent.
    pub dirty_since: Option<Instant>,
    /// The id of the latest run request; replies carry it, so a failure of an older request is not shown.
    pub next_id: u64,
    /// Why the latest run failed (shown instead of its numbers; cleared by the next successful run).
    pub error: Option<String>,
    /// Prompts longer than the context keep their last block_size tokens (`:truncate`), as `run --truncate` does.
    pub truncate: bool,
    /// The ablations also steer the dense model through the bridges (`:bridge on`, a bridged model only).
    pub bridge: bool,
}

impl LabState {
    /// The index of the sweep point read out in `s`.
    pub fn sweep_index(&self, s: &SweepResult) -> usize {
        let last = s.points.len().saturating_sub(1);
        self.sweep_at.map_or(last, |i| i.min(last))
    }

    /// The token index the table reads in `run`.
    pub fn cursor_in(&self, run: &RunSummary) -> usize {
        let last = run.tokens.len().saturating_sub(1);
        self.cursor.map_or(last, |c| c.min(last))
    }
}

/// What the lab's keys do (bound in [`crate::tui::keymap::BINDINGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabAction {
    /// Starts editing the prompt (insert mode).
    Edit,
    /// Moves the token cursor one token left.
    TokenLeft,
    /// Moves the token cursor one token right; past the last token it follows the last one.
    TokenRight,
    /// Moves the token cursor to the first token.
    FirstToken,
    /// The token cursor follows the last token (as the prompt grows).
    FollowLast,
    /// Selects the next row of the magnitudes table (and its node).
    TableDown,
    /// Selects the previous row of the magnitudes table (and its node).
    TableUp,
    /// Pins the current run as the baseline.
    Pin,
    /// Toggles a zero ablation of the selected node.
    AblateZero,
    /// Toggles a mean ablation of the selected node (its mean over the scan corpus).
    AblateMean,
    /// Undoes the last change of ablations.
    Undo,
    /// Turns every ablation off (undoably).
    Clear,
    /// Runs the length sweep of the fragment at the editor's cursor.
    Sweep,
    /// Hides the sweep's pane.
    HideSweep,
    /// Move the sweep's read-out point by this many insertion counts.
    SweepPoint(i64),
    /// Sort the magnitudes table by raw change or by change in scan standard deviations.
    ToggleSortByStd,
    /// Runs the prompt again as it is.
    Rerun,
}

/// Runs a lab key's action on the app.
pub fn perform(app: &mut App, a: LabAction) {
    let cur = app.lab.run.as_ref().map_or(0, |r| app.lab.cursor_in(r));
    let n_tokens = app.lab.run.as_ref().map_or(0, |r| r.tokens.len());
    match a {
        LabAction::Edit => {
            // The mode and the hints say how to stop: no status message, which would outlive the editing.
            app.mode = Mode::Insert;
        }
        LabAction::TokenLeft => app.lab.cursor = Some(cur.saturating_sub(1)),
        LabAction::TokenRight => app.lab.cursor = if cur + 1 >= n_tokens { None } else { Some(cur + 1) },
        LabAction::FirstToken => app.lab.cursor = Some(0),
        LabAction::FollowLast => app.lab.cursor = None,
        LabAction::TableDown | LabAction::TableUp => {
            let rows = app.magnitudes();
            if rows.is_empty() {
                return;
            }
            let sel = app.lab.table_sel;
            app.lab.table_sel = if a == LabAction::TableDown {
                sel + 1
            } else {
                sel.saturating_sub(1)
            }
            .min(rows.len() - 1);
            app.select(rows[app.lab.table_sel].node);
        }
        LabAction::Pin => app.pin_baseline(),
        LabAction::AblateZero | LabAction::AblateMean => {
            let kind = if a == LabAction::AblateMean {
                AblationKind::Mean
            } else {
                AblationKind::Zero
            };
            if let Some(n) = app.selected {
                app.toggle_ablation(n, kind);
            }
        }
        LabAction::Undo => app.undo(),
        LabAction::Clear => app.clear_ablations(),
        LabAction::Sweep => app.request_sweep(),
        LabAction::HideSweep => app.lab.sweep = None,
        LabAction::SweepPoint(d) => match &app.lab.sweep {
            Some(s) if !s.points.is_empty() => {
                let i = (app.lab.sweep_index(s) as i64 + d).clamp(0, s.points.len() as i64 - 1) as usize;
                app.lab.sweep_at = Some(i);
            }
            _ => app.status = "no sweep to read (s sweeps)".into(),
        },
        LabAction::ToggleSortByStd => {
            if app.lab.node_std.is_empty() {
                app.status = "no scan statistics: the table sorts by the raw change".into();
            } else {
                app.lab.sort_by_std = !app.lab.sort_by_std;
                app.lab.table_sel = 0;
                app.status = if app.lab.sort_by_std {
                    "sorted by the change in units of each node's scan standard deviation (Δ/σ)".into()
                } else {
                    "sorted by the raw change".into()
                };
            }
        }
        LabAction::Rerun => app.request_run(),
    }
}

/// Draws the lab in `area`: the prompt editor, the heat strip, the magnitudes table, the next tokens and the sweep,
/// recording the tokens and table rows as click targets.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let edit_h = (app.prompt.lines().len() as u16 + 2).clamp(4, 8).min(left.height / 3);
    let [editor, strip, table] = Layout::vertical([
        Constraint::Length(edit_h),
        Constraint::Length(6.min(left.height / 4)),
        Constraint::Min(3),
    ])
    .areas(left);
    draw_editor(app, f, editor);
    draw_strip(app, f, strip);
    draw_table(app, f, table);
    let sweep_h = if app.lab.sweep.is_some() {
        right.height * 3 / 5
    } else {
        0
    };
    let [next, abl, sweep] = Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(5.min(right.height / 4)),
        Constraint::Length(sweep_h),
    ])
    .areas(right);
    draw_next(app, f, next);
    draw_ablations(app, f, abl);
    if sweep_h > 0 {
        super::lab_sweep::draw(app, f, sweep);
    }
}

fn draw_editor(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let editing = app.mode == Mode::Insert;
    let info = match (&app.lab.run, &app.lab.error) {
        (_, Some(e)) => e.clone(),
        (Some(r), None) if app.show_timing => format!("{} tokens · {:.1} ms", r.tokens.len(), r.elapsed_ms),
        (Some(r), None) => format!("{} tokens", r.tokens.len()),
        (None, None) => "running…".into(),
    };
    let info = match &app.lab.run {
        Some(r) if r.dropped > 0 => format!("{info} · first {} cut (:truncate)", r.dropped),
        _ => info,
    };
    let title = format!(
        " prompt {} · {info} ",
        if editing { "(editing, Esc stops)" } else { "(e edits)" }
    );
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_style(if editing { t.focused_border() } else { t.border() })
        .title(title);
    let inner = block.inner(area);
    let (lines, drawn) = editor_view::render(
        app.prompt.lines(),
        (app.prompt.cursor().0, app.prompt.cursor().1),
        inner.height as usize,
        inner.width as usize,
        &app.lab.editor_top,
        editor_view::cursor_style(editing),
    );
    let hint = drawn.hint();
    if !hint.is_empty() {
        block = block.title_bottom(Line::styled(format!(" {hint} "), t.accent()).right_aligned());
    }
    f.render_widget(block, area);
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_strip(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let (Some(run), Some(n)) = (&app.lab.run, app.selected) else {
        f.render_widget(Block::default().borders(Borders::ALL).title(" tokens "), area);
        return;
    };
    let acts = run.acts.get(&n).cloned().unwrap_or_default();
    let cur = app.lab.cursor_in(run);
    let scale = abs_max(acts.iter());
    let block = pane(
        app,
        format!(
            " {n} per token · cursor {:?} = {} · ±{} ",
            token_label(run.tokens.get(cur).map_or("", |s| s)),
            fmt_val(acts.get(cur).copied().unwrap_or(0.0)),
            fmt_val(scale)
        ),
    );
    let inner = block.inner(area);
    f.render_widget(block, area);
    let strip = HeatStrip {
        tokens: &run.tokens,
        acts: &acts,
        scale,
        pivot: None,
        cursor: Some(cur),
        window: None,
    };
    let (mut lines, places) = heat_lines(&strip, t, inner.width as usize, usize::MAX);
    // Keep the cursor's line in view.
    let cur_line = places.iter().find(|p| p.0 == cur).map_or(0, |p| p.1);
    let h = inner.height as usize;
    let offset = (cur_line + 1).saturating_sub(h);
    let mut hits = app.hits.borrow_mut();
    for &(i, line, col, w) in &places {
        if line >= offset && line < offset + h {
            hits.push((
                Rect {
                    x: inner.x + col as u16,
                    y: inner.y + (line - offset) as u16,
                    width: w as u16,
                    height: 1,
                },
                Hit::Token(i),
            ));
        }
    }
    drop(hits);
    lines.drain(..offset.min(lines.len()));
    f.render_widget(Paragraph::new(dim_if_stale(app, lines)), inner);
}

fn draw_table(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let rows = app.magnitudes();
    let order = if app.lab.sort_by_std {
        " · by Δ/σ (scan std)"
    } else {
        ""
    };
    let block = pane(app, format!(" at cursor vs baseline, {BASELINE_ALIGNMENT}{order} "));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if rows.is_empty() {
        f.render_widget(Paragraph::new(Line::styled("no run yet", t.dim())), inner);
        return;
    }
    let h = inner.height.saturating_sub(1) as usize;
    let sel = app.lab.table_sel.min(rows.len() - 1);
    let offset = if sel < h { 0 } else { sel + 1 - h };
    // With `o` the change column is the change in the node's scan standard deviations.
    let by_std = app.lab.sort_by_std;
    let shown = |r: &crate::tui::app::MagnitudeRow| if by_std { r.sigmas } else { Some(r.change) };
    let shown_all: Vec<f32> = rows.iter().filter_map(shown).collect();
    let scale = abs_max(shown_all.iter());
    let change_head = if by_std { "Δ/σ" } else { "change" };
    let direct_scale = abs_max(rows.iter().filter_map(|r| r.direct.as_ref()));
    // Narrower tables drop the baseline column first (the change still shows against it), so that labels keep
    // some room, then the direct-effect column (the next-token pane shows the selected node's).
    let wide = inner.width >= 80;
    let direct_col = inner.width >= 56;
    let mut header = if wide {
        format!("{:<24} {:>9} {:>9} {:>9}", "node", "value", "baseline", change_head)
    } else {
        format!("{:<24} {:>9} {:>9}", "node", "value", change_head)
    };
    if direct_col {
        header += &format!(" {:>9}", DIRECT_HEADER);
    }
    let mut lines = vec![Line::styled(format!("{header}  label"), t.dim())];
    let mut hits = app.hits.borrow_mut();
    for (i, r) in rows.iter().enumerate().skip(offset).take(h) {
        let label = app
            .annotations
            .get(&r.node)
            .map(|a| a.label.clone())
            .unwrap_or_default();
        let ablated = app.lab.ablations.iter().find(|a| a.node == r.node);
        let name = match ablated {
            Some(a) => format!("{} ({})", r.node, a.kind.name()),
            None => r.node.to_string(),
        };
        let mut line = Line::from(vec![
            Span::raw(if wide {
                format!(
                    "{name:<24} {:>9} {:>9} ",
                    fmt_val(r.value),
                    r.baseline.map_or("—".into(), fmt_val)
                )
            } else {
                format!("{name:<24} {:>9} ", fmt_val(r.value))
            }),
            match shown(r) {
                Some(c) => Span::styled(format!("{:>9}", fmt_val(c)), t.heat(c, scale)),
                None => Span::styled(format!("{:>9}", "—"), t.dim()),
            },
        ]);
        if direct_col {
            line.spans.push(match r.direct {
                Some(d) => Span::styled(format!(" {:>9}", fmt_val(d)), t.heat(d, direct_scale)),
                None => Span::styled(format!(" {:>9}", "—"), t.dim()),
            });
        }
        line.spans.push(Span::raw(format!("  {label}")));
        if i == sel {
            line = line.patch_style(t.selected());
        } else if Some(r.node) == app.selected {
            line = line.patch_style(ratatui::style::Style::new().add_modifier(Modifier::BOLD));
        }
        hits.push((
            Rect {
                x: inner.x,
                y: inner.y + 1 + (i - offset) as u16,
                width: inner.width,
                height: 1,
            },
            Hit::TableRow(i),
        ));
        lines.push(line);
    }
    drop(hits);
    f.render_widget(Paragraph::new(dim_if_stale(app, lines)), inner);
}

/// A bordered pane titled `title`, the title led by a stale label (and why) when the lab's run is stale.
fn pane(app: &App, title: String) -> Block<'static> {
    let block = Block::default().borders(Borders::ALL).border_style(app.theme.border());
    match app.run_staleness() {
        Some(why) => block.title(Line::from(vec![
            Span::styled(format!(" STALE ({why})"), app.theme.warn()),
            Span::raw(format!(" ·{title}")),
        ])),
        None => block.title(title),
    }
}

/// The lines dimmed when the lab's run is stale, so that its numbers do not read as the current prompt's.
fn dim_if_stale(app: &App, lines: Vec<Line<'static>>) -> Vec<Line<'static>> {
    if app.run_staleness().is_none() {
        return lines;
    }
    lines
        .into_iter()
        .map(|l| l.patch_style(ratatui::style::Style::new().add_modifier(Modifier::DIM)))
        .collect()
}

fn draw_next(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut lines: Vec<Line<'static>> = Vec::new();
    if let Some(run) = &app.lab.run {
        match (run.logit_diff(), app.lab.baseline.as_ref().and_then(|b| b.logit_diff())) {
            (Some(d), base) => {
                lines.push(Line::from(vec![
                    Span::raw("logit diff A−B "),
                    Span::styled(format!("{d:+.3}"), if d >= 0.0 { t.good() } else { t.warn() }),
                ]));
                // On its own line, so that a narrow pane does not cut the change.
                if let Some(b) = base {
                    lines.push(Line::styled(format!("Δ {:+.3} vs baseline {b:+.3}", d - b), t.dim()));
                }
            }
            (None, _) => lines.push(Line::styled("the task's targets are not single tokens", t.dim())),
        }
        if let Some(d) = app.selected.and_then(|n| run.direct_effects.get(&n)) {
            lines.push(Line::styled(format!("selected {DIRECT_HEADER} {d:+.3}"), t.dim()));
        }
        lines.extend(task_loss_lines(app, run));
        if let Some(b) = &run.bridge {
            lines.extend(bridge_lines(app, b));
        }
        let w = area.width.saturating_sub(24) as usize;
        for (tok, p) in &run.top {
            let bar = "█".repeat(((p * w as f32).round() as usize).min(w));
            lines.push(Line::from(vec![
                Span::raw(format!("{:<10} {:>6.3} ", format!("{:?}", token_label(tok)), p)),
                Span::styled(bar, t.title()),
            ]));
        }
    }
    f.render_widget(
        Paragraph::new(dim_if_stale(app, lines)).block(pane(app, " next token ".into())),
        area,
    );
}

/// The dense model under the run's ablations carried through the bridge (`:bridge on`): its logit difference and
/// most probable next tokens, before → after.
fn bridge_lines(app: &App, b: &crate::workbench::BridgeRunView) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(
        format!("dense via bridge at {} · |Δ| {:.3}", b.site, b.dense_delta_norm),
        t.title(),
    )];
    if let Some((before, after)) = b.logit_diff() {
        lines.push(Line::from(vec![
            Span::raw("  A−B "),
            Span::raw(format!("{before:+.3} → ")),
            Span::styled(format!("{after:+.3}"), if after >= 0.0 { t.good() } else { t.warn() }),
            Span::styled(format!(" ({:+.3})", after - before), t.dim()),
        ]));
    }
    for ((tb, pb), (ta, pa)) in b.top_before.iter().zip(&b.top_after).take(BRIDGE_TOP) {
        lines.push(Line::raw(format!(
            "  {:<10} {pb:>5.3} → {:<10} {pa:>5.3}",
            format!("{:?}", token_label(tb)),
            format!("{:?}", token_label(ta)),
        )));
    }
    lines
}

/// How many of the dense model's next tokens the bridge lines show (before and after side by side).
const BRIDGE_TOP: usize = 3;

/// The column head of the direct effect on the task's logit difference.
pub const DIRECT_HEADER: &str = "→A−B";

/// The task loss and accuracy under the run's ablations (held-out pairs, measured on the engine thread with the
/// run), and the change against the baseline's.
fn task_loss_lines(app: &App, run: &RunSummary) -> Vec<Line<'static>> {
    let t = &app.theme;
    let (Some(loss), Some(acc)) = (run.task_loss, run.task_accuracy) else {
        return vec![Line::styled(
            "no task loss (no task with single-token targets)",
            t.dim(),
        )];
    };
    // Shown halved, the one scale every task loss is shown in (the engine measures the raw two-sided loss).
    let loss = loss / 2.0;
    let mut lines = vec![Line::from(vec![
        Span::raw("task loss "),
        Span::styled(format!("{loss:.4}"), t.accent()),
        Span::raw(format!(" · acc {:.0}%", acc * 100.0)),
    ])];
    lines.push(Line::styled(
        format!("  halved, {} held-out pairs", run.task_pairs),
        t.dim(),
    ));
    if let Some(b) = app.lab.baseline.as_ref().filter(|b| b.ablations != run.ablations) {
        if let (Some(bl), Some(ba)) = (b.task_loss, b.task_accuracy) {
            lines.push(Line::styled(
                format!("  Δ loss {:+.4} · acc {:+.0} pts", loss - bl / 2.0, (acc - ba) * 100.0),
                t.dim(),
            ));
        }
    }
    lines
}

fn draw_ablations(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let l = &app.lab;
    let text = if l.ablations.is_empty() {
        "none (a zero, A mean)".to_string()
    } else {
        l.ablations
            .iter()
            .map(|a| format!("{} {}", a.node, a.kind.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    f.render_widget(
        Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(format!(" ablations · undo {} redo {} ", l.undo.len(), l.redo.len())),
        ),
        area,
    );
}

/// The node whose row is selected in the table, for callers that need it.
pub fn table_node(app: &App) -> Option<NodeId> {
    app.magnitudes().get(app.lab.table_sel).map(|r| r.node)
}
