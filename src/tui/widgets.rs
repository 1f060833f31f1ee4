//! Small drawing helpers: the token heat strip (tokens coloured by an activation on one signed scale, the pivot
//! token reversed, or framed in `⟦ ⟧` without colours, the cursor token underlined) and a histogram line.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::theme::{ColorMode, Theme};

/// A token as one cell run: newlines and tabs made visible, never empty.
pub fn token_label(t: &str) -> String {
    let s: String = t
        .chars()
        .map(|c| match c {
            '\n' => '↵',
            '\t' => '→',
            '\r' => '␍',
            c if c.is_control() => '·',
            c => c,
        })
        .collect();
    if s.is_empty() {
        "∅".into()
    } else {
        s
    }
}

/// Terminal columns `s` takes: tokens can be CJK (two columns a character) or emoji.
pub fn text_width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// The longest prefix of `s` that fits in `w` columns (a wide character that would straddle the edge is
/// dropped).
pub fn truncate_to_width(s: &str, w: usize) -> String {
    let mut used = 0;
    s.chars()
        .take_while(|c| {
            used += UnicodeWidthChar::width(*c).unwrap_or(0);
            used <= w
        })
        .collect()
}

/// Options for [`heat_lines`].
pub struct HeatStrip<'a> {
    /// The token texts, one per cell.
    pub tokens: &'a [String],
    /// One activation per token (same length as `tokens`).
    pub acts: &'a [f32],
    /// The extreme of the signed scale.
    pub scale: f32,
    /// The token shown reversed (framed in `⟦ ⟧` without colours): the exemplar's peak.
    pub pivot: Option<usize>,
    /// The token shown underlined: the lab's token cursor.
    pub cursor: Option<usize>,
    /// Show only this window of tokens (start, end).
    pub window: Option<(usize, usize)>,
}

/// Where a token landed: (token index, line, column, width).
pub type Placement = (usize, usize, usize, usize);

/// The strip wrapped to `width_cols` columns, at most `max_lines` lines; returns the lines and, for each shown
/// token, its [`Placement`] for mouse hits.
pub fn heat_lines(
    strip: &HeatStrip,
    theme: &Theme,
    width_cols: usize,
    max_lines: usize,
) -> (Vec<Line<'static>>, Vec<Placement>) {
    let (start, end) = strip.window.unwrap_or((0, strip.tokens.len()));
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut cur: Vec<Span<'static>> = Vec::new();
    let mut col = 0usize;
    let mut places = Vec::new();
    for i in start..end.min(strip.tokens.len()) {
        let v = strip.acts.get(i).copied().unwrap_or(0.0);
        let mut label = token_label(&strip.tokens[i]);
        let boxed = strip.pivot == Some(i);
        // Brackets would read as code (`[[0` on a bracket task): with colours the pivot is reversed and
        // underlined instead, and only without colours is it framed, with brackets that do not occur in code.
        if boxed && theme.mode == ColorMode::None {
            label = format!("⟦{label}⟧");
        }
        let w = text_width(&label).min(width_cols.max(1));
        if col + w > width_cols && col > 0 {
            lines.push(Line::from(std::mem::take(&mut cur)));
            col = 0;
            if lines.len() >= max_lines {
                return (lines, places);
            }
        }
        let mut style = theme.heat(v, strip.scale);
        if boxed {
            style = style.add_modifier(Modifier::BOLD | Modifier::REVERSED | Modifier::UNDERLINED);
        }
        if strip.cursor == Some(i) {
            style = style.add_modifier(Modifier::UNDERLINED | Modifier::BOLD);
        }
        let label = truncate_to_width(&label, w);
        places.push((i, lines.len(), col, w));
        cur.push(Span::styled(label, style));
        col += w;
    }
    if !cur.is_empty() && lines.len() < max_lines {
        lines.push(Line::from(cur));
    }
    (lines, places)
}

/// The largest |value| (at least a tiny positive number, so a zero strip has a scale).
pub fn abs_max<'a>(values: impl IntoIterator<Item = &'a f32>) -> f32 {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-6)
}

/// A window of at most `n` tokens around `pivot`.
pub fn window_around(len: usize, pivot: usize, n: usize) -> (usize, usize) {
    if len <= n {
        return (0, len);
    }
    let start = pivot.saturating_sub(n * 2 / 3).min(len - n);
    (start, start + n)
}

/// Counts as a one-line bar chart of eighth blocks, log-scaled so that rare bins stay visible.
pub fn histogram_line(counts: &[u64], width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if counts.is_empty() || width == 0 {
        return String::new();
    }
    // Merge bins down to the width.
    let per = counts.len().div_ceil(width);
    let merged: Vec<u64> = counts.chunks(per).map(|c| c.iter().sum()).collect();
    let max = merged.iter().map(|&c| ((c as f64) + 1.0).ln()).fold(0.0, f64::max);
    merged
        .iter()
        .map(|&c| {
            if c == 0 || max <= 0.0 {
                ' '
            } else {
                let x = ((c as f64) + 1.0).ln() / max;
                BARS[((x * 8.0).round() as usize).clamp(1, 8)]
            }
        })
        .collect()
}

/// A rect shrunk by a margin, never negative.
pub fn inset(r: Rect, dx: u16, dy: u16) -> Rect {
    Rect {
        x: r.x + dx.min(r.width / 2),
        y: r.y + dy.min(r.height / 2),
        width: r.width.saturating_sub(2 * dx),
        height: r.height.saturating_sub(2 * dy),
    }
}

/// A value with a sign and fixed width.
pub fn fmt_val(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.abs() < 0.001 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

/// An optional loss to 4 decimals, or `—` when absent.
pub fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_wraps_and_boxes() {
        let tokens: Vec<String> = ["a", "bb", "\n", "ccc"].iter().map(|s| s.to_string()).collect();
        let acts = [1.0, -1.0, 0.0, 0.5];
        let t = Theme::new(ColorMode::TrueColor);
        let s = HeatStrip {
            tokens: &tokens,
            acts: &acts,
            scale: 1.0,
            pivot: Some(1),
            cursor: None,
            window: None,
        };
        let (lines, places) = heat_lines(&s, &t, 6, 10);
        assert_eq!(lines.len(), 2);
        // With colours the pivot keeps its text and is marked by style only.
        assert_eq!(lines[0].spans[1].content, "bb");
        assert!(lines[0].spans[1].style.add_modifier.contains(Modifier::REVERSED));
        assert!(!lines[0].spans[0].style.add_modifier.contains(Modifier::REVERSED));
        assert_eq!(places[2], (2, 0, 3, 1));
        assert_eq!(places[3], (3, 1, 0, 3));
        // Without colours it is framed in brackets that do not occur in code.
        let (lines, _) = heat_lines(&s, &Theme::new(ColorMode::None), 6, 10);
        assert_eq!(lines[0].spans[1].content, "⟦bb⟧");
        assert_eq!(histogram_line(&[0, 1, 100], 3).chars().count(), 3);
    }

    #[test]
    fn wide_tokens_take_their_terminal_width() {
        assert_eq!(text_width("ab"), 2);
        assert_eq!(text_width("日本"), 4);
        assert_eq!(text_width("🦀"), 2);
        assert_eq!(truncate_to_width("日本語", 5), "日本");
        assert_eq!(truncate_to_width("abc", 2), "ab");
        // A strip of CJK tokens wraps by columns, not by characters.
        let tokens: Vec<String> = ["日本", "語", "x"].iter().map(|s| s.to_string()).collect();
        let strip = HeatStrip {
            tokens: &tokens,
            acts: &[0.0, 0.0, 0.0],
            scale: 1.0,
            pivot: None,
            cursor: None,
            window: None,
        };
        let (lines, places) = heat_lines(&strip, &Theme::new(ColorMode::TrueColor), 5, 5);
        assert_eq!(places, vec![(0, 0, 0, 4), (1, 1, 0, 2), (2, 1, 2, 1)]);
        assert_eq!(lines.len(), 2);
        assert_eq!(window_around(100, 50, 10), (44, 54));
        assert_eq!(window_around(5, 3, 10), (0, 5));
    }
}
