//! The notes view: every annotation of the session, filterable; Enter goes to the node.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::circuit::NodeId;
use crate::tui::app::{App, Mode, Screen};

/// The notes view's state: the filter and the selected row.
#[derive(Debug, Default)]
pub struct NotesState {
    /// The filter as typed; matched against id, label, notes, tags and status (see [`rows`]).
    pub filter: String,
    /// The selected row (an index into [`rows`]).
    pub sel: usize,
}

/// What the notes view's keys do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotesAction {
    /// Selects the next row.
    Down,
    /// Selects the previous row.
    Up,
    /// To the selected annotation's node on the map.
    Jump,
    /// Start typing the filter.
    Filter,
    /// Clears the filter.
    ClearFilter,
}

/// Runs a notes screen key's action on the app.
pub fn perform(app: &mut App, a: NotesAction) {
    match a {
        NotesAction::Down => {
            let n = rows(app).len();
            if n > 0 {
                app.notes.sel = (app.notes.sel + 1).min(n - 1);
            }
        }
        NotesAction::Up => app.notes.sel = app.notes.sel.saturating_sub(1),
        NotesAction::Jump => jump(app),
        NotesAction::Filter => {
            app.mode = Mode::Filter;
            app.status = "filter: id, label, notes, tags, status or `conflict`".into();
        }
        NotesAction::ClearFilter => {
            app.notes.filter.clear();
            app.notes.sel = 0;
        }
    }
}

/// The view's rows: every annotation matching the filter (id, label, notes, tags, status), in forward order of
/// the node.
pub fn rows(app: &App) -> Vec<NodeId> {
    let q = app.notes.filter.trim().to_lowercase();
    let mut v: Vec<NodeId> = app
        .annotations
        .iter()
        .filter(|(_, a)| !a.is_empty())
        .filter(|(n, a)| {
            q.is_empty()
                || n.to_string().to_lowercase().contains(&q)
                || a.label.to_lowercase().contains(&q)
                || a.notes.to_lowercase().contains(&q)
                || a.status.name().contains(&q)
                || a.tags.iter().any(|t| t.to_lowercase().contains(&q))
                || (q == "conflict" && !a.conflict.is_empty())
        })
        .map(|(n, _)| *n)
        .collect();
    v.sort_by_key(|n| n.forward_order());
    v
}

/// Enter: to the selected row's node on the map.
fn jump(app: &mut App) {
    let rows = rows(app);
    match rows.get(app.notes.sel.min(rows.len().saturating_sub(1))) {
        Some(&n) if app.circuit.position(&n).is_some() => {
            app.jump(n);
            app.set_screen(Screen::Map);
        }
        Some(n) => app.status = format!("{n} is not in this circuit"),
        None => app.status = "no annotation matches".into(),
    }
}

/// Draws the annotated nodes matching the filter, and the selected one's annotation in full.
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let rows = rows(app);
    let sel = app.notes.sel.min(rows.len().saturating_sub(1));
    let [list, detail] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let mut lines: Vec<Line> = Vec::new();
    let filter = if app.notes.filter.is_empty() && app.mode != Mode::Filter {
        "f filters".to_string()
    } else {
        format!(
            "filter: {}{}",
            app.notes.filter,
            if app.mode == Mode::Filter { "█" } else { "" }
        )
    };
    lines.push(Line::styled(filter, t.dim()));
    if rows.is_empty() {
        lines.push(Line::styled(
            if app.annotations.is_empty() {
                "no annotations yet: c labels the selected node, e edits its notes, E attaches evidence"
            } else {
                "no annotation matches the filter"
            },
            t.dim(),
        ));
    }
    let inner_h = list.height.saturating_sub(3) as usize;
    let skip = sel.saturating_sub(inner_h.saturating_sub(1));
    for (i, n) in rows.iter().enumerate().skip(skip).take(inner_h) {
        let a = &app.annotations[n];
        let mut spans = vec![
            Span::styled(
                format!("{:<24}", n.to_string()),
                if i == sel { t.selected() } else { t.text() },
            ),
            Span::styled(format!(" {:<11}", a.status.name()), t.dim()),
            Span::raw(a.label.replace('\n', " ")),
        ];
        if !a.conflict.is_empty() {
            spans.push(Span::styled(" ⚠ conflict", t.accent()));
        }
        if app.circuit.position(n).is_none() {
            spans.push(Span::styled(" (not in this circuit)", t.dim()));
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(format!(
                    " notes: {} of {} annotations ",
                    rows.len(),
                    app.annotations.len()
                )),
        ),
        list,
    );
    let mut d: Vec<Line> = Vec::new();
    if let Some(n) = rows.get(sel) {
        let a = &app.annotations[n];
        d.push(Line::styled(n.to_string(), t.title()));
        d.push(Line::from(format!("label: {}", a.label)));
        let mut meta = format!("status: {}", a.status.name());
        if let Some(c) = a.confidence {
            meta.push_str(&format!(" · confidence {c:.2}"));
        }
        if !a.tags.is_empty() {
            meta.push_str(&format!(" · tags: {}", a.tags.join(", ")));
        }
        d.push(Line::from(meta));
        for (i, c) in a.conflict.iter().enumerate() {
            d.push(Line::styled(
                format!(
                    "conflict {}) {} (from {}) — :resolve {}",
                    i + 1,
                    c.label,
                    c.source,
                    i + 1
                ),
                t.accent(),
            ));
        }
        d.push(Line::from(""));
        for l in a.notes.lines() {
            d.push(Line::from(l.to_string()));
        }
        d.push(Line::from(""));
        d.push(Line::styled(
            format!("{} pieces of evidence", a.evidence.len()),
            t.title(),
        ));
        for e in &a.evidence {
            d.push(Line::from(evidence_summary(e, n)));
        }
    }
    f.render_widget(
        Paragraph::new(d).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(" annotation "),
        ),
        detail,
    );
}

/// One line per piece of evidence.
pub fn evidence_summary(e: &crate::session::Evidence, n: &crate::circuit::NodeId) -> String {
    use crate::session::Evidence;
    match e {
        Evidence::Prompt {
            prompt,
            position,
            magnitudes,
            logit_diff,
            ablations,
            ..
        } => format!(
            "· prompt {:?} @{position}: {} {} · {}",
            prompt
                .chars()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>(),
            magnitudes.get(n).map_or("—".into(), |v| format!("{v:+.3}")),
            logit_diff.map_or(String::new(), |d| format!("· logit diff {d:+.3}")),
            // The numbers only mean something with the ablations they were taken under (the export shows them).
            if ablations.is_empty() {
                "no ablation".to_string()
            } else {
                format!(
                    "under {}",
                    ablations
                        .iter()
                        .map(|a| format!("{} {}", a.node, a.mode.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        Evidence::Ablation {
            ablations,
            logit_diff_before,
            logit_diff_after,
            ..
        } => format!(
            "· ablation of {}: logit diff {} → {}",
            ablations
                .iter()
                .map(|a| format!("{} {}", a.node, a.mode.name()))
                .collect::<Vec<_>>()
                .join(", "),
            logit_diff_before.map_or("—".into(), |d| format!("{d:+.3}")),
            logit_diff_after.map_or("—".into(), |d| format!("{d:+.3}"))
        ),
        Evidence::Explanation { text, correlation, .. } => format!(
            "· automatic explanation {text:?}: correlation {}",
            correlation.map_or("—".into(), |c| format!("{c:.2}"))
        ),
    }
}
