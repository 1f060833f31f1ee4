//! Small drawing helpers: the token heat strip (tokens coloured by an activation on one signed scale, the pivot
//! token reversed, or framed in `⟦ ⟧` without colours, the cursor token underlined) and log-scaled histogram sparklines.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Sparkline;

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

/// A token shown in a table column of exactly `w` columns: its visible label, cut to fit or padded with spaces.
pub fn token_cell(text: &str, w: usize) -> String {
    let mut label = truncate_to_width(&token_label(text), w);
    label.push_str(&" ".repeat(w.saturating_sub(text_width(&label))));
    label
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

/// `bins` counts resampled to `width` columns (each column sums the bins it covers; with fewer bins than
/// columns, each bin spans several).
pub fn resample(bins: &[u64], width: usize) -> Vec<u64> {
    let n = bins.len();
    if n == 0 || width == 0 {
        return Vec::new();
    }
    (0..width)
        .map(|c| {
            let start = c * n / width;
            let end = ((c + 1) * n / width).max(start + 1).min(n);
            bins[start..end].iter().sum()
        })
        .collect()
}

/// A histogram's counts as the heights of a [`Sparkline`] `width` columns wide and `rows` high: resampled, then
/// log-scaled (ln(1 + count), as the reference's log-y histograms) so that rare bins stay visible; a column with
/// any count is at least one eighth block high.
pub fn log_histogram(counts: &[u64], width: usize, rows: u16) -> Vec<u64> {
    let heights: Vec<u64> = resample(counts, width)
        .into_iter()
        .map(|c| {
            if c == 0 {
                0
            } else {
                (((c as f64) + 1.0).ln() * 100.0) as u64
            }
        })
        .collect();
    // The sparkline draws value · rows · 8 / max eighths (rounded down): this floor makes that at least one.
    let max = heights.iter().copied().max().unwrap_or(0);
    let floor = max.div_ceil(8 * u64::from(rows.max(1)));
    heights
        .into_iter()
        .map(|h| if h == 0 { 0 } else { h.max(floor) })
        .collect()
}

/// `counts` as a log-scaled [`Sparkline`] in `style` (see [`log_histogram`]), filling `area`.
pub fn histogram_sparkline(counts: &[u64], area: Rect, style: Style) -> Sparkline<'static> {
    Sparkline::default()
        .data(log_histogram(counts, area.width as usize, area.height))
        .style(style)
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

    #[test]
    fn resample_sums_or_repeats() {
        assert_eq!(resample(&[1, 2, 3, 4], 2), vec![3, 7]);
        assert_eq!(resample(&[1, 2], 4), vec![1, 1, 2, 2]);
        assert_eq!(resample(&[1, 2, 3], 3), vec![1, 2, 3]);
    }

    #[test]
    fn rare_bins_stay_visible_in_a_log_histogram() {
        let h = log_histogram(&[0, 1, 1_000_000], 3, 1);
        assert_eq!(h[0], 0);
        assert_eq!(h[2], (1_000_001f64.ln() * 100.0) as u64);
        // One count against a million still draws at least an eighth block in one row.
        assert!(h[1] * 8 >= h[2], "{h:?}");
        assert!(log_histogram(&[], 5, 1).is_empty());
    }
}
