//! How the lab's prompt editor is drawn: which lines and columns are in view, the cursor (visible in every
//! mode, since a sweep inserts there), and hints for what is scrolled out of view.
//!
//! The text area keeps the text and the cursor; the view is ours, because the widget's own horizontal scroll
//! only ever moved as far as the cursor, so after a long line was deleted the view stayed scrolled right and
//! hid the start of the short lines left.

use std::cell::Cell;

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

/// Columns a tab advances to the next multiple of.
const TAB: usize = 4;

/// The part of the text in view: the first line shown and the first column shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Viewport {
    /// The first text line in view (0-based).
    pub top: usize,
    /// The first display column in view (tabs count as their expanded width).
    pub left: usize,
}

/// The viewport that shows the cursor at (`row`, display column `col`) in a `height` × `width` area of a text
/// of `n_lines` lines. Vertically it moves only as far as needed from `prev_top` (so the view does not jump
/// while the cursor moves inside it) and never leaves empty rows below the text; horizontally it scrolls no
/// further than needed to show the cursor, so whenever the cursor's column fits the width the lines are shown
/// from their start.
pub fn viewport(n_lines: usize, row: usize, col: usize, height: usize, width: usize, prev_top: usize) -> Viewport {
    let height = height.max(1);
    let mut top = prev_top.min(n_lines.saturating_sub(height));
    if row < top {
        top = row;
    } else if row >= top + height {
        top = row + 1 - height;
    }
    Viewport {
        top,
        left: col.saturating_sub(width.max(1) - 1),
    }
}

/// The display cells of a line: each character with its columns (tabs expanded to the next stop).
fn cells(line: &str) -> Vec<(String, usize)> {
    let mut out = Vec::with_capacity(line.len());
    let mut x = 0;
    for c in line.chars() {
        let (s, w) = match c {
            '\t' => {
                let w = TAB - x % TAB;
                (" ".repeat(w), w)
            }
            c if c.is_control() => ("·".to_string(), 1),
            c => (c.to_string(), UnicodeWidthChar::width(c).unwrap_or(0)),
        };
        x += w;
        out.push((s, w));
    }
    out
}

/// The display column of character `ch` of `line` (tabs and wide characters counted).
pub fn display_col(line: &str, ch: usize) -> usize {
    cells(line).iter().take(ch).map(|c| c.1).sum()
}

/// What [`render`] drew: the viewport and how much of the text is out of view on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    /// The viewport drawn; the caller keeps it as the next frame's `prev_top`.
    pub view: Viewport,
    /// Lines above and below the view.
    pub above: usize,
    /// Lines below the view.
    pub below: usize,
}

impl Drawn {
    /// A short note of what is out of view (`↑2 ↓5 lines · from col 41`), empty when everything is in view.
    pub fn hint(&self) -> String {
        let mut parts = Vec::new();
        if self.above > 0 || self.below > 0 {
            parts.push(format!("↑{} ↓{} lines", self.above, self.below));
        }
        if self.view.left > 0 {
            parts.push(format!("from col {}", self.view.left + 1));
        }
        parts.join(" · ")
    }
}

/// The lines of `text` in a `height` × `width` area with the cursor at (row, character) drawn in
/// `cursor_style`; `top` is the view's first line, kept between frames.
pub fn render(
    lines: &[String],
    cursor: (usize, usize),
    height: usize,
    width: usize,
    top: &Cell<usize>,
    cursor_style: Style,
) -> (Vec<Line<'static>>, Drawn) {
    let (row, ch) = cursor;
    let col = lines.get(row).map_or(0, |l| display_col(l, ch));
    let view = viewport(lines.len(), row, col, height, width, top.get());
    top.set(view.top);
    let mut out = Vec::with_capacity(height);
    for (i, line) in lines.iter().enumerate().skip(view.top).take(height) {
        let mut spans = Vec::new();
        let mut x = 0;
        let mut plain = String::new();
        let cs = cells(line);
        for (j, (s, w)) in cs.iter().enumerate() {
            let start = x;
            x += w;
            if start < view.left || x > view.left + width {
                continue;
            }
            if i == row && j == ch {
                spans.push(Span::raw(std::mem::take(&mut plain)));
                spans.push(Span::styled(s.clone(), cursor_style));
            } else {
                plain.push_str(s);
            }
        }
        spans.push(Span::raw(plain));
        // At the end of the line the cursor is a cell after the text.
        if i == row && ch >= cs.len() && x >= view.left && x < view.left + width {
            spans.push(Span::styled(" ", cursor_style));
        }
        out.push(Line::from(spans));
    }
    let drawn = Drawn {
        view,
        above: view.top,
        below: lines.len().saturating_sub(view.top + height),
    };
    (out, drawn)
}

/// The cursor's style: reversed while editing; reversed and underlined otherwise, where it marks where `s`
/// (the length sweep) inserts.
pub fn cursor_style(editing: bool) -> Style {
    if editing {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_scrolls_only_as_far_as_the_cursor_needs() {
        // A short line after a long one was deleted: the view is back at column 0.
        assert_eq!(viewport(1, 0, 10, 6, 70, 0).left, 0);
        // A long line: the cursor at its end is the last visible column.
        assert_eq!(viewport(1, 0, 100, 6, 70, 0).left, 31);
        // Vertically: from the top, the cursor on line 8 of 12 in 6 rows shows lines 3..=8.
        assert_eq!(viewport(12, 8, 0, 6, 70, 0).top, 3);
        // Moving up inside the view keeps it; above it, the view follows.
        assert_eq!(viewport(12, 5, 0, 6, 70, 3).top, 3);
        assert_eq!(viewport(12, 1, 0, 6, 70, 3).top, 1);
        // A text that shrank below the view's bottom is shown from the top again.
        assert_eq!(viewport(4, 3, 0, 6, 70, 5).top, 0);
    }

    #[test]
    fn rendering_marks_the_cursor_and_says_what_is_out_of_view() {
        let lines: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        let top = Cell::new(0);
        let style = cursor_style(false);
        let (out, drawn) = render(&lines, (9, 6), 4, 20, &top, style);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].to_string(), "line 6");
        assert_eq!(drawn.hint(), "↑6 ↓0 lines");
        // The cursor after the text is a styled blank cell.
        let last = out[3].spans.last().unwrap();
        assert_eq!((last.content.as_ref(), last.style), (" ", style));
        assert_eq!(top.get(), 6);
        // Tabs take columns up to the next stop.
        assert_eq!(display_col("\tx", 1), 4);
        assert_eq!(display_col("a\tx", 2), 4);
    }
}
