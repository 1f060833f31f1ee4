//! The `?` overlay: the keymap's bindings, the mouse and the `:` commands, each drawn from the table that drives
//! it ([`keymap::BINDINGS`], [`keymap::MOUSE`], [`command::HELP`]), so that the help cannot list a key that does
//! nothing or miss one that does something.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

use super::app::App;
use super::{command, keymap};

/// (command, what it does), as the overlay and the README list them.
pub const COMMANDS: &[(&str, &str)] = command::HELP;

/// (where, keys, what they do): every key row the overlay shows, in its order: the keymap, then the mouse.
pub fn key_rows() -> Vec<(&'static str, &'static str, &'static str)> {
    keymap::BINDINGS
        .iter()
        .map(|b| (b.scope.name(), b.keys, b.help))
        .chain(keymap::MOUSE.iter().map(|(what, help)| ("mouse", *what, *help)))
        .collect()
}

/// The overlay's lines: a heading per scope, the key rows, then the commands.
pub fn lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let rows = key_rows();
    let key_w = rows.iter().map(|r| r.1.width()).max().unwrap_or(10);
    let cmd_w = COMMANDS.iter().map(|c| c.0.width()).max().unwrap_or(10);
    let mut lines = Vec::new();
    let mut last = "";
    for (scope, keys, what) in rows {
        if scope != last {
            lines.push(Line::styled(scope.to_string(), t.title()));
            last = scope;
        }
        lines.push(Line::from(vec![
            Span::styled(format!("  {}  ", pad(keys, key_w)), t.accent()),
            Span::raw(what),
        ]));
    }
    lines.push(Line::styled("commands", t.title()));
    for (c, what) in COMMANDS {
        lines.push(Line::from(vec![
            Span::styled(format!("  {}  ", pad(c, cmd_w)), t.accent()),
            Span::raw(*what),
        ]));
    }
    lines
}

/// `s` padded with spaces to `w` terminal columns.
fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(s.width())))
}

/// Draws the overlay over `body`, scrolled by `app.help_scroll`.
pub fn draw(app: &App, f: &mut Frame, body: Rect) {
    let t = &app.theme;
    let lines = lines(app);
    let r = centered(body, 110, body.height);
    f.render_widget(Clear, r);
    let total = lines.len();
    let inner_h = r.height.saturating_sub(2) as usize;
    let scroll = app.help_scroll.min(total.saturating_sub(inner_h));
    let title = if total > inner_h {
        format!(
            " keys {}-{} of {total} (j/k scroll, any other key closes) ",
            scroll + 1,
            (scroll + inner_h).min(total)
        )
    } else {
        " keys (any key closes) ".to_string()
    };
    f.render_widget(
        Paragraph::new(lines).scroll((scroll as u16, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.focused_border())
                .title(title),
        ),
        r,
    );
}

/// A `w`×`h` rectangle in the middle of `area` (clipped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
