//! `view(&App, &mut Frame)`: the frame around the screens (title and tabs, status bar, command line, search
//! results, help overlay) and the too-small message.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::app::{App, Hit, Mode, Screen, MIN_HEIGHT, MIN_WIDTH};
use super::help;
use super::screens::{attribution, embedding, heads, inspector, lab, map, notes, pairs, pruning};

/// Draws the whole frame: the tab bar, the current screen, the status line and the overlays (help, `/`, `:`);
/// clears and refills the click targets. A terminal below [`MIN_WIDTH`]×[`MIN_HEIGHT`] gets a message instead.
pub fn view(app: &App, f: &mut Frame) {
    app.hits.borrow_mut().clear();
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal is {}x{}; circuitscope needs at least {MIN_WIDTH}x{MIN_HEIGHT}: enlarge the window (q quits)",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [top, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_top(app, f, top);
    match app.screen {
        Screen::Map => map::draw(app, f, body),
        Screen::Inspector => inspector::draw(app, f, body),
        Screen::Lab => lab::draw(app, f, body),
        Screen::Notes => notes::draw(app, f, body),
        Screen::Pruning => pruning::draw(app, f, body),
        Screen::Embedding => embedding::draw(app, f, body),
        Screen::Pairs => pairs::draw(app, f, body),
        Screen::Heads => heads::draw(app, f, body),
        Screen::Attribution => attribution::draw(app, f, body),
    }
    draw_status(app, f, status);
    if app.mode == Mode::Search {
        draw_search(app, f, body);
    }
    if app.help {
        help::draw(app, f, body);
    }
}

/// The top line: the name, the screens as tabs (clickable), and what is open.
fn draw_top(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    const BRAND: &str = " circuitscope ";
    let what = open_info(app);
    // The full tab titles only where they leave room for what is open; short ones where those fit; else the
    // other tabs by their number alone (the number keys pick them).
    let full: usize = Screen::all().map(|s| s.title().width() + 3).sum();
    let short: usize = Screen::all().map(|s| s.short_title().width() + 3).sum();
    let narrow = (area.width as usize) < BRAND.width() + full + what.width() + 1;
    let compact = (area.width as usize) < BRAND.width() + short;
    let mut titles: Vec<Line> = Vec::new();
    let mut x = area.x + BRAND.width() as u16;
    for s in Screen::all() {
        let label = match (narrow, compact) {
            (false, _) => format!(" {} ", s.title()),
            (true, true) if s != app.screen => format!(" {} ", &s.short_title()[..1]),
            (true, _) => format!(" {} ", s.short_title()),
        };
        let w = label.width() as u16;
        app.hits.borrow_mut().push((
            Rect {
                x,
                y: area.y,
                width: w,
                height: 1,
            },
            Hit::Tab(s),
        ));
        // One column of divider after each tab.
        x += w + 1;
        titles.push(Line::styled(
            label,
            if s == app.screen { t.selected() } else { t.dim() },
        ));
    }
    let tabs_w = x.saturating_sub(area.x + BRAND.width() as u16 + 1);
    let [brand, tabs, info] = Layout::horizontal([
        Constraint::Length(BRAND.width() as u16),
        Constraint::Length(tabs_w),
        Constraint::Fill(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(Span::styled(BRAND, t.title())), brand);
    let selected = Screen::all().position(|s| s == app.screen);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(t.selected())
            .divider(" ")
            .padding("", ""),
        tabs,
    );
    f.render_widget(
        Paragraph::new(Line::from(vec![Span::raw(" "), Span::styled(what, t.dim())])),
        info,
    );
}

/// What is open, for the top line: the model, the task, the circuit's size and the session.
fn open_info(app: &App) -> String {
    let c = &app.circuit;
    let session = match &app.session {
        Some(st) => format!(
            " · {}{}",
            st.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            if st.read_only.is_some() { " (read-only)" } else { "" }
        ),
        None => String::new(),
    };
    format!(" {} · {} · k={}{session}", c.model_name, app.task, c.file.nodes.len())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Normal => "NORMAL",
        Mode::Insert => "INSERT",
        Mode::Search => "JUMP",
        Mode::Command => "COMMAND",
        Mode::Filter => "FILTER",
    }
}

fn hints(app: &App) -> &'static str {
    match (app.mode, app.screen) {
        (Mode::Insert, _) => "type to edit · Esc stop",
        (Mode::Search, _) => "type id or label · ↑↓ pick · Enter jump · Esc cancel",
        (Mode::Command, _) => "Enter run · Esc cancel",
        (Mode::Filter, _) => "type to filter · Enter/Esc done",
        (_, Screen::Map) => "hjkl move · Enter inspect · J/K f o i edges · m mark · / jump · ? help",
        (_, Screen::Inspector) => "jk scroll · n/N quantile · J/K f o i edges · Esc map · ? help",
        (_, Screen::Lab) => "e edit · hl token · jk node · a/A ablate · u undo · p pin · s sweep · ? help",
        (_, Screen::Notes) => "jk move · Enter go to node · f filter · Esc clear filter · ? help",
        (_, Screen::Pruning) => "jk PgUp PgDn scroll prune_config · g top · ? help",
        (_, Screen::Embedding) => "jk/arrows channel · PgUp/PgDn ±16 · g selected node's channel · ? help",
        (_, Screen::Pairs) => "jk node · hl head · n/N pair · R re-run · :pairs N · ? help",
        (_, Screen::Heads) => "hjkl head · s score · c Q/K/V · Enter channels · R refresh · ? help",
        (_, Screen::Attribution) => "hjkl node · J/K Enter edges · p pin · s group · < > threshold · g map · ? help",
    }
}

fn draw_status(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let line = match app.mode {
        Mode::Command => Line::from(vec![
            Span::styled(" COMMAND ", t.selected()),
            Span::raw(format!(" :{}", app.command)),
            Span::styled("█", t.accent()),
        ]),
        Mode::Search => Line::from(vec![
            Span::styled(" JUMP ", t.selected()),
            Span::raw(format!(" /{}", app.search)),
            Span::styled("█", t.accent()),
        ]),
        m => {
            // The message comes first: it answers what the user just did, while the hints are always the same,
            // so they take only the room that is left, and only whole.
            let mode = format!(" {} ", mode_name(m));
            let mut spans = vec![Span::styled(mode.clone(), t.selected()), Span::raw(" ")];
            let mut used = mode.width() + 1;
            if !app.status.is_empty() {
                spans.push(Span::styled(app.status.clone(), t.accent()));
                spans.push(Span::raw("  "));
                used += app.status.width() + 2;
            }
            // As many whole hints as fit.
            let room = (area.width as usize).saturating_sub(used);
            let mut shown = String::new();
            for h in hints(app).split(" · ") {
                let next = if shown.is_empty() {
                    h.to_string()
                } else {
                    format!("{shown} · {h}")
                };
                if next.width() > room {
                    break;
                }
                shown = next;
            }
            spans.push(Span::styled(shown, t.dim()));
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_search(app: &App, f: &mut Frame, body: Rect) {
    let t = &app.theme;
    let hits = app.circuit.search(&app.search, &app.annotations);
    let n = hits.len().min(10);
    let h = (n as u16 + 2).max(3);
    let r = Rect {
        x: body.x,
        y: body.y + body.height.saturating_sub(h),
        width: body.width.min(60),
        height: h.min(body.height),
    };
    let sel = app.search_sel.min(hits.len().saturating_sub(1));
    let lines: Vec<Line> = if hits.is_empty() {
        vec![Line::styled("no match", t.dim())]
    } else {
        hits.iter()
            .take(10)
            .enumerate()
            .map(|(i, node)| {
                let label = app.annotations.get(node).map(|a| a.label.as_str()).unwrap_or("");
                let s = format!("{node}  {label}");
                Line::styled(s, if i == sel { t.selected() } else { t.text() })
            })
            .collect()
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(format!(" jump: {} matches ", hits.len())),
        ),
        r,
    );
}
