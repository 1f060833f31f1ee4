//! The embedding screen (the reference viewer's "wte/wpe viz"): one residual channel at a time, its top-20 and
//! bottom-20 tokens by wte[:, ch] (nonzero entries only), a log-scaled histogram of the column's nonzero values,
//! and wpe over positions for a window of channels around it on a signed colour scale. The engine sends the
//! numbers as owned vectors ([`EmbeddingView`]).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use std::collections::{BTreeSet, HashMap};

use crate::tui::app::{is_residual, App};
use crate::tui::widgets::{fmt_val, histogram_sparkline, text_width, token_cell};
use crate::workbench::EmbeddingView;
use crate::workbench::Request;

/// The embedding screen: the residual channel it shows and the views the engine has sent.
#[derive(Default)]
pub struct EmbedState {
    /// The residual channel shown (below `d_model` once it is known).
    pub channel: usize,
    /// The model's d_model (the channel selector's range); 0 until `load` sets it.
    pub d_model: usize,
    /// Views the engine has sent, by channel (kept so that moving back needs no new request).
    pub views: HashMap<usize, EmbeddingView>,
    /// Channels requested and not yet answered, so that each is asked for once.
    pub pending: BTreeSet<usize>,
}

/// What the embedding screen's keys do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingAction {
    /// Move by this many channels.
    Channel(i64),
    /// The selected node's channel, when it is a residual node.
    SelectedChannel,
}

/// Runs an embedding screen key's action on the app.
pub fn perform(app: &mut App, a: EmbeddingAction) {
    match a {
        EmbeddingAction::Channel(d) => set_channel(app, app.embed.channel as i64 + d),
        EmbeddingAction::SelectedChannel => match app.selected.filter(|n| is_residual(n.site)) {
            Some(n) => set_channel(app, n.index as i64),
            None => app.status = "the selected node is not a residual channel".into(),
        },
    }
}

/// Shows residual channel `ch` (clamped to 0..d_model) on the embedding screen, asking the engine for it.
pub fn set_channel(app: &mut App, ch: i64) {
    let max = app.embed.d_model.saturating_sub(1) as i64;
    let ch = if app.embed.d_model > 0 {
        ch.clamp(0, max)
    } else {
        ch.max(0)
    } as usize;
    app.embed.channel = ch;
    if !app.embed.views.contains_key(&ch) && app.embed.pending.insert(ch) {
        app.outbox.push(Request::Embedding { channel: ch });
    }
}

/// Draws the channel's header and its top embedding and unembedding tokens (a wait message until they arrive).
pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let ch = app.embed.channel;
    let view = app.embed.views.get(&ch);
    let [head, body] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let mut spans = vec![
        Span::styled(format!("channel {ch}"), t.accent()),
        Span::raw(format!(" of 0..{}", app.embed.d_model.saturating_sub(1))),
    ];
    match view {
        Some(v) => spans.push(Span::raw(format!(
            " · tokens writing: {} of {} nonzero in wte[:, {ch}] · range {} .. {}",
            v.nonzero,
            v.vocab,
            fmt_val(v.range.0),
            fmt_val(v.range.1)
        ))),
        None => spans.push(Span::styled(" · loading…", t.dim())),
    }
    if let Some(n) = app.selected.filter(|n| crate::tui::app::is_residual(n.site)) {
        spans.push(Span::styled(format!(" · g: {n}"), t.dim()));
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(" residual channel (j/k, PgUp/PgDn) "),
        ),
        head,
    );
    let Some(v) = view else { return };
    // Narrow windows give the token lists more room: a token cut to 3 characters cannot be read.
    let token_share = if body.width < 110 { 60 } else { 50 };
    let [tokens, right] = Layout::horizontal([
        Constraint::Percentage(token_share),
        Constraint::Percentage(100 - token_share),
    ])
    .areas(body);
    let [top, bottom] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(tokens);
    draw_tokens(app, f, top, " top 20 ", &v.top);
    draw_tokens(app, f, bottom, " bottom 20 ", &v.bottom);
    let [hist, wpe] = Layout::vertical([Constraint::Length(6), Constraint::Min(3)]).areas(right);
    draw_hist(app, f, hist, v);
    draw_wpe(app, f, wpe, v);
}

fn draw_tokens(app: &App, f: &mut Frame, area: Rect, title: &str, rows: &[(u32, String, f32)]) {
    let t = &app.theme;
    let inner_w = area.width.saturating_sub(2) as usize;
    // token, id (5), weight (8)
    let tok_w = inner_w.saturating_sub(13).max(3);
    let lines: Vec<Line> = if rows.is_empty() {
        vec![Line::styled("no nonzero entries", t.dim())]
    } else {
        rows.iter()
            .map(|(id, text, w)| {
                Line::from(vec![
                    Span::styled(token_cell(text, tok_w), t.text()),
                    Span::styled(format!(" {id:>4}"), t.dim()),
                    Span::styled(format!(" {:>7}", fmt_val(*w)), t.accent()),
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

fn draw_hist(app: &App, f: &mut Frame, area: Rect, v: &EmbeddingView) {
    let t = &app.theme;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border())
        .title(" nonzero values of wte[:, ch] (log count) ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    if v.nonzero == 0 || inner.height == 0 {
        f.render_widget(Paragraph::new(Line::styled("no nonzero entries", t.dim())), inner);
        return;
    }
    let [bars, axis] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    f.render_widget(histogram_sparkline(&v.hist, bars, t.accent()), bars);
    let lo = fmt_val(v.range.0);
    let hi = fmt_val(v.range.1);
    let gap = (axis.width as usize).saturating_sub(text_width(&lo) + text_width(&hi));
    f.render_widget(
        Paragraph::new(Line::styled(format!("{lo}{}{hi}", " ".repeat(gap)), t.dim())),
        axis,
    );
}

fn draw_wpe(app: &App, f: &mut Frame, area: Rect, v: &EmbeddingView) {
    let t = &app.theme;
    let Some(w) = &v.wpe else {
        f.render_widget(
            Paragraph::new(Line::styled(
                "not available (the model has no position table indexed by residual channel)",
                t.dim(),
            ))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.border())
                    .title(" wpe "),
            ),
            area,
        );
        return;
    };
    let inner_h = area.height.saturating_sub(3) as usize; // borders and the position axis
    let label_w = 7usize;
    let cells = (area.width.saturating_sub(2) as usize).saturating_sub(label_w).max(1);
    // The channels shown: a window of the engine's window that keeps the selected channel in view.
    let rows = w.channels.min(inner_h.max(1));
    let sel = v.channel - w.first;
    let start = sel.saturating_sub(rows / 2).min(w.channels - rows);
    // Positions binned to the cells (mean of each bin).
    let per = w.positions.div_ceil(cells).max(1);
    let n_cells = w.positions.div_ceil(per);
    let cell = |ch: usize, c: usize| -> f32 {
        let (a, b) = (c * per, ((c + 1) * per).min(w.positions));
        (a..b).map(|p| w.at(p, ch)).sum::<f32>() / (b - a).max(1) as f32
    };
    // Signed square root: a symlog-like scale so that a few large positions do not wash the rest out.
    let sq = |x: f32| x.signum() * x.abs().sqrt();
    let shown: Vec<Vec<f32>> = (start..start + rows)
        .map(|i| (0..n_cells).map(|c| sq(cell(w.first + i, c))).collect())
        .collect();
    let scale = shown.iter().flatten().fold(0f32, |m, x| m.max(x.abs())).max(1e-9);
    let mut lines: Vec<Line> = Vec::new();
    for (i, row) in shown.iter().enumerate() {
        let ch = w.first + start + i;
        let mut spans = vec![Span::styled(
            format!("{ch:>5}  "),
            if ch == v.channel { t.selected() } else { t.dim() },
        )];
        spans.extend(row.iter().map(|x| Span::styled(" ", t.heat(*x, scale))));
        lines.push(Line::from(spans));
    }
    let last = format!("{}", w.positions - 1);
    let gap = n_cells.saturating_sub(1 + last.len());
    lines.push(Line::styled(
        format!("{:<label_w$}0{}{last}", "  pos", " ".repeat(gap)),
        t.dim(),
    ));
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.border())
                .title(format!(
                    " wpe[pos, ch] · {} positions{} · signed √ scale (red +, blue −) ",
                    w.positions,
                    if per > 1 {
                        format!(", {per} per cell")
                    } else {
                        String::new()
                    }
                )),
        ),
        area,
    );
}
