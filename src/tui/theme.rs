//! Colours: one signed heat scale (red positive, blue negative, as the reference's coolwarm), accents, and
//! their downgrades for 256-colour terminals and NO_COLOR (where emphasis moves to bold/reverse/underline).

use ratatui::style::{Color, Modifier, Style};

/// How many colours the terminal shows, which decides how the theme's colours are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// NO_COLOR: no colours at all.
    None,
    /// 256 colours: RGB values are mapped to the nearest of the xterm palette.
    Ansi256,
    /// 24-bit colour: RGB values as they are.
    TrueColor,
}

impl ColorMode {
    /// From the environment: NO_COLOR (any non-empty value) wins, then COLORTERM=truecolor/24bit, else 256.
    pub fn detect() -> ColorMode {
        Self::from_env(
            std::env::var("NO_COLOR").ok().as_deref(),
            std::env::var("COLORTERM").ok().as_deref(),
        )
    }

    /// [`ColorMode::detect`] on given values of NO_COLOR and COLORTERM (testable without touching the environment).
    pub fn from_env(no_color: Option<&str>, colorterm: Option<&str>) -> ColorMode {
        if no_color.is_some_and(|v| !v.is_empty()) {
            return ColorMode::None;
        }
        match colorterm {
            Some(v) if v.contains("truecolor") || v.contains("24bit") => ColorMode::TrueColor,
            _ => ColorMode::Ansi256,
        }
    }
}

/// The workbench's styles for one colour mode; every screen takes its colours from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// The colour support the styles are written for.
    pub mode: ColorMode,
}

impl Theme {
    /// The theme for `mode`.
    pub fn new(mode: ColorMode) -> Self {
        Theme { mode }
    }

    fn rgb(&self, r: u8, g: u8, b: u8) -> Option<Color> {
        match self.mode {
            ColorMode::None => None,
            ColorMode::TrueColor => Some(Color::Rgb(r, g, b)),
            ColorMode::Ansi256 => Some(Color::Indexed(to_256(r, g, b))),
        }
    }

    fn fg(&self, r: u8, g: u8, b: u8) -> Style {
        match self.rgb(r, g, b) {
            Some(c) => Style::new().fg(c),
            None => Style::new(),
        }
    }

    /// Body text: the terminal's own colours.
    pub fn text(&self) -> Style {
        Style::new()
    }

    /// Secondary text (hints, units, stale numbers): grey; plain under NO_COLOR.
    pub fn dim(&self) -> Style {
        match self.mode {
            ColorMode::None => Style::new(),
            _ => self.fg(128, 128, 128),
        }
    }

    /// Pane and screen titles: bold light blue.
    pub fn title(&self) -> Style {
        self.fg(120, 180, 255).add_modifier(Modifier::BOLD)
    }

    /// What needs the eye (key names in the help, the status message): bold amber.
    pub fn accent(&self) -> Style {
        self.fg(255, 200, 80).add_modifier(Modifier::BOLD)
    }

    /// Errors and warnings: bold red.
    pub fn warn(&self) -> Style {
        self.fg(255, 90, 90).add_modifier(Modifier::BOLD)
    }

    /// Good news (a gain in the lab, a loss within bounds on the pruning screen): green.
    pub fn good(&self) -> Style {
        self.fg(110, 210, 110)
    }

    /// The selected row or node: reversed and bold, so it shows under NO_COLOR too.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    /// Marked nodes: bold magenta.
    pub fn marked(&self) -> Style {
        self.fg(255, 120, 220).add_modifier(Modifier::BOLD)
    }

    /// Pane borders: as dim text.
    pub fn border(&self) -> Style {
        self.dim()
    }

    /// The focused pane's border: light blue.
    pub fn focused_border(&self) -> Style {
        self.fg(120, 180, 255)
    }

    /// The cell colour of value `v` on a signed scale whose extreme is `scale` (> 0): white at 0, red at
    /// +scale, blue at −scale. `None` when there is no colour (NO_COLOR) or the value is ~0.
    pub fn heat_color(&self, v: f32, scale: f32) -> Option<Color> {
        let x = heat_fraction(v, scale);
        if x.abs() < 0.02 {
            return None;
        }
        let fade = (255.0 * (1.0 - x.abs())).round() as u8;
        if x > 0.0 {
            self.rgb(255, fade, fade)
        } else {
            self.rgb(fade, fade, 255)
        }
    }

    /// A token cell on the heat scale: coloured background with dark text, or without colours bold for
    /// |x| ≥ 0.25 and reversed for |x| ≥ 0.6 (sign shown by the value panes).
    pub fn heat(&self, v: f32, scale: f32) -> Style {
        match self.heat_color(v, scale) {
            Some(bg) => Style::new().bg(bg).fg(Color::Black),
            None if self.mode == ColorMode::None => {
                let x = heat_fraction(v, scale).abs();
                if x >= 0.6 {
                    Style::new().add_modifier(Modifier::REVERSED)
                } else if x >= 0.25 {
                    Style::new().add_modifier(Modifier::BOLD)
                } else {
                    Style::new()
                }
            }
            None => Style::new(),
        }
    }

    /// A node on the map, shaded by its importance (0..=1 of the circuit's largest).
    pub fn node(&self, importance: f32) -> Style {
        let x = importance.clamp(0.0, 1.0);
        let c = (110.0 + 145.0 * x) as u8;
        let s = self.fg((c as f32 * 0.45) as u8, (c as f32 * 0.75) as u8, c);
        if x > 0.5 {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }
}

/// v / scale clamped to [-1, 1]; 0 for a non-positive or non-finite scale.
pub fn heat_fraction(v: f32, scale: f32) -> f32 {
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() || !v.is_finite() {
        return 0.0;
    }
    (v / scale).clamp(-1.0, 1.0)
}

/// The nearest colour of the xterm 6×6×6 cube (indices 16..=231).
pub fn to_256(r: u8, g: u8, b: u8) -> u8 {
    let q = |x: u8| -> u8 {
        // The cube's levels are 0, 95, 135, 175, 215, 255.
        if x < 48 {
            0
        } else if x < 115 {
            1
        } else {
            ((x as u16 - 35) / 40) as u8
        }
    };
    16 + 36 * q(r) + 6 * q(g) + q(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_modes() {
        assert_eq!(ColorMode::from_env(Some("1"), Some("truecolor")), ColorMode::None);
        assert_eq!(ColorMode::from_env(Some(""), Some("truecolor")), ColorMode::TrueColor);
        assert_eq!(ColorMode::from_env(None, None), ColorMode::Ansi256);
        assert_eq!(to_256(255, 0, 0), 196);
        assert_eq!(to_256(0, 0, 255), 21);
        assert_eq!(to_256(255, 255, 255), 231);
        let t = Theme::new(ColorMode::TrueColor);
        assert_eq!(t.heat_color(1.0, 1.0), Some(Color::Rgb(255, 0, 0)));
        assert_eq!(t.heat_color(-2.0, 1.0), Some(Color::Rgb(0, 0, 255)));
        assert_eq!(t.heat_color(0.0, 1.0), None);
        assert_eq!(Theme::new(ColorMode::None).heat_color(1.0, 1.0), None);
        assert_eq!(heat_fraction(1.0, 0.0), 0.0);
    }
}
