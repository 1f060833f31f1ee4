//! Everything that changes the app arrives as one of these, on one channel: input, timers and engine replies.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent};

use crate::workbench::Reply;

/// One input to [`super::update`]: terminal events, the timer tick, or an engine reply.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key event (the app ignores releases).
    Key(KeyEvent),
    /// A mouse click or wheel notch; clicks are resolved against the last frame's hit areas.
    Mouse(MouseEvent),
    /// Text pasted into the terminal (bracketed paste); goes into the prompt in insert mode, else ignored.
    Paste(String),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// A timer tick: runs the debounced prompt re-run.
    Tick,
    /// A reply from the engine's worker thread.
    Engine(Reply),
}

impl Msg {
    /// A plain key press (tests and scripts).
    pub fn key(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// A key press of character `c`, with Shift for upper-case ASCII as a terminal sends it (tests and scripts).
    pub fn ch(c: char) -> Msg {
        let mods = if c.is_ascii_uppercase() {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        Msg::Key(KeyEvent::new(KeyCode::Char(c), mods))
    }

    /// Ctrl held with character `c` (tests and scripts).
    pub fn ctrl(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }

    /// One key message per character of `s` (Enter for '\n').
    pub fn typed(s: &str) -> Vec<Msg> {
        s.chars()
            .map(|c| {
                if c == '\n' {
                    Msg::key(KeyCode::Enter)
                } else {
                    Msg::ch(c)
                }
            })
            .collect()
    }
}
