//! The notes view: every annotation of the session and every automatic explanation (`circuitscope explain`) of
//! a node the analyst has not labeled, filterable by text and by explanation score, sorted by node or by score;
//! Enter goes to the node.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::circuit::NodeId;
use crate::session::Evidence;
use crate::tui::app::{App, Mode, Screen};

/// The notes view's state: the filter, the order and the selected row.
#[derive(Debug, Default)]
pub struct NotesState {
    /// The filter as typed; matched against id, label, notes, tags and status, with `score>=0.7`-style terms
    /// and `auto` (see [`rows`]).
    pub filter: String,
    /// The order of the rows.
    pub sort: NotesSort,
    /// The selected row (an index into [`rows`]).
    pub sel: usize,
}

/// The order of the notes view's rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum NotesSort {
    /// Forward order of the nodes.
    #[default]
    Node,
    /// Best explained first (rows without a score last).
    ScoreDown,
    /// Worst explained first (rows without a score last): where the analyst's own work is needed.
    ScoreUp,
}

impl NotesSort {
    /// The next order in the `s` cycle.
    fn next(self) -> NotesSort {
        match self {
            NotesSort::Node => NotesSort::ScoreDown,
            NotesSort::ScoreDown => NotesSort::ScoreUp,
            NotesSort::ScoreUp => NotesSort::Node,
        }
    }

    /// How the title names it.
    fn name(self) -> &'static str {
        match self {
            NotesSort::Node => "node order",
            NotesSort::ScoreDown => "score, best first",
            NotesSort::ScoreUp => "score, worst first",
        }
    }
}

/// A `score>=0.7` term of the filter: the explanation's correlation compared with a bound.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ScoreBound {
    /// `>=`, `<=`, `>` or `<`.
    op: &'static str,
    /// The bound.
    value: f32,
}

impl ScoreBound {
    /// `score>=0.7`, `score<0.3`, ... (case-insensitive); `None` for any other term.
    fn parse(term: &str) -> Option<ScoreBound> {
        let rest = term.strip_prefix("score")?;
        let op = [">=", "<=", ">", "<"].into_iter().find(|op| rest.starts_with(op))?;
        let value: f32 = rest[op.len()..].parse().ok()?;
        value.is_finite().then_some(ScoreBound { op, value })
    }

    fn admits(self, score: f32) -> bool {
        match self.op {
            ">=" => score >= self.value,
            "<=" => score <= self.value,
            ">" => score > self.value,
            _ => score < self.value,
        }
    }
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
    /// Node order → score, best first → score, worst first.
    CycleSort,
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
            app.status = "filter: id, label, notes, tags, status, `conflict`, `auto`, `score>=0.7`".into();
        }
        NotesAction::ClearFilter => {
            app.notes.filter.clear();
            app.notes.sel = 0;
        }
        NotesAction::CycleSort => {
            app.notes.sort = app.notes.sort.next();
            app.notes.sel = 0;
            app.status = format!("notes sorted by {}", app.notes.sort.name());
        }
    }
}

/// The node's explanation score: the correlation of the explanation the analyst accepted as its label (the last
/// `explanation` evidence), else of its automatic explanation while it has no label of its own.
pub fn score(app: &App, n: &NodeId) -> Option<f32> {
    let a = app.annotations.get(n);
    let accepted = a.and_then(|a| {
        a.evidence.iter().rev().find_map(|e| match e {
            Evidence::Explanation { correlation, .. } => *correlation,
            _ => None,
        })
    });
    let labeled = a.is_some_and(|a| !a.label.trim().is_empty());
    accepted.or_else(|| if labeled { None } else { app.auto.get(n)?.correlation })
}

/// Whether the row shows only an automatic explanation (no annotation of the analyst's).
fn is_auto_only(app: &App, n: &NodeId) -> bool {
    app.annotations.get(n).is_none_or(|a| a.is_empty())
}

/// The view's rows: every annotation and every unlabeled node's automatic explanation that match the filter,
/// in the chosen order. The filter's `score>=0.7`-style terms bound the explanation score (a row without one
/// fails them), `auto` keeps the rows with an automatic explanation only, and the other words, as one phrase,
/// match id, label (or automatic explanation), notes, tags or status, or `conflict` the rows with a conflict.
pub fn rows(app: &App) -> Vec<NodeId> {
    let query = app.notes.filter.trim().to_lowercase();
    let mut bounds = Vec::new();
    let mut auto_only = false;
    let mut words = Vec::new();
    for term in query.split_whitespace() {
        if let Some(b) = ScoreBound::parse(term) {
            bounds.push(b);
        } else if term == "auto" {
            auto_only = true;
        } else {
            words.push(term);
        }
    }
    let q = words.join(" ");
    let annotated = app.annotations.iter().filter(|(_, a)| !a.is_empty()).map(|(n, _)| *n);
    let explained = app.auto.keys().copied().filter(|n| is_auto_only(app, n));
    let mut v: Vec<NodeId> = annotated
        .chain(explained)
        .filter(|n| !auto_only || is_auto_only(app, n))
        .filter(|n| {
            let s = score(app, n);
            bounds.iter().all(|b| s.is_some_and(|s| b.admits(s)))
        })
        .filter(|n| {
            if q.is_empty() || n.to_string().to_lowercase().contains(&q) {
                return true;
            }
            match app.annotations.get(n).filter(|a| !a.is_empty()) {
                Some(a) => {
                    a.label.to_lowercase().contains(&q)
                        || a.notes.to_lowercase().contains(&q)
                        || a.status.name().contains(&q)
                        || a.tags.iter().any(|t| t.to_lowercase().contains(&q))
                        || (q == "conflict" && !a.conflict.is_empty())
                }
                None => app.auto.get(n).is_some_and(|e| e.text.to_lowercase().contains(&q)),
            }
        })
        .collect();
    v.sort_by_key(|n| n.forward_order());
    let descending = match app.notes.sort {
        NotesSort::Node => return v,
        NotesSort::ScoreDown => true,
        NotesSort::ScoreUp => false,
    };
    // Each row's score once (it scans the annotation's evidence), not once per comparison. Stable: equal scores
    // keep node order; rows without a score go last either way.
    let mut scored: Vec<(Option<f32>, NodeId)> = v.into_iter().map(|n| (score(app, &n), n)).collect();
    scored.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(x), Some(y)) if descending => y.total_cmp(x),
        (Some(x), Some(y)) => x.total_cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    scored.into_iter().map(|(_, n)| n).collect()
}

/// Enter: to the selected row's node on the map.
fn jump(app: &mut App) {
    let rows = rows(app);
    match rows.get(app.notes.sel.min(rows.len().saturating_sub(1))) {
        Some(&n) if app.circuit.position(&n).is_some() => {
            app.jump(n);
            app.set_screen(Screen::Map);
        }
        // A feature of the SAE opened beside the model has no place on the map: to the inspector.
        Some(&n) if n.is_feature() && n.check_feature(app.sae).is_ok() => {
            app.jump(n);
            app.set_screen(Screen::Inspector);
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
        let id = Span::styled(
            format!("{:<24}", n.to_string()),
            if i == sel { t.selected() } else { t.text() },
        );
        let mut spans = match app.annotations.get(n).filter(|a| !a.is_empty()) {
            Some(a) => {
                let mut spans = vec![
                    id,
                    Span::styled(format!(" {:<11}", a.status.name()), t.dim()),
                    Span::raw(a.label.replace('\n', " ")),
                ];
                if !a.conflict.is_empty() {
                    spans.push(Span::styled(" ⚠ conflict", t.accent()));
                }
                spans
            }
            None => vec![
                id,
                Span::styled(format!(" {:<11}", "automatic"), t.dim()),
                Span::styled(app.auto.get(n).map_or("", |e| e.text.as_str()).to_string(), t.dim()),
            ],
        };
        if let Some(c) = score(app, n) {
            spans.push(Span::styled(format!(" · corr {c:.2}"), t.dim()));
        }
        if n.is_feature() {
            spans.push(Span::styled(" (SAE feature)", t.dim()));
        } else if app.circuit.position(n).is_none() {
            spans.push(Span::styled(" (not in this circuit)", t.dim()));
        }
        lines.push(Line::from(spans));
    }
    let n_auto = app.auto.keys().filter(|n| is_auto_only(app, n)).count();
    let mut title = if n_auto == 0 {
        format!(" notes: {} of {} annotations ", rows.len(), app.annotations.len())
    } else {
        format!(
            " notes: {} of {} annotations and {n_auto} automatic ",
            rows.len(),
            app.annotations.len()
        )
    };
    if app.notes.sort != NotesSort::Node {
        title.push_str(&format!("· {} ", app.notes.sort.name()));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(title),
        ),
        list,
    );
    let mut d: Vec<Line> = Vec::new();
    let selected = rows.get(sel);
    if let Some((n, e)) = selected
        .filter(|n| is_auto_only(app, n))
        .and_then(|n| Some((n, app.auto.get(n)?)))
    {
        d.push(Line::styled(n.to_string(), t.title()));
        d.push(Line::styled(format!("automatic explanation: {}", e.text), t.dim()));
        d.push(Line::from(e.score.clone()));
        d.push(Line::from(""));
        d.push(Line::styled(
            "no label yet: Enter, then :accept takes this as the label (with its score as evidence)",
            t.dim(),
        ));
    } else if let Some(n) = selected {
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
