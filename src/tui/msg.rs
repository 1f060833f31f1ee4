//! Everything that changes the app arrives as one of these, on one channel: input, timers and engine replies.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent};

use crate::workbench::Reply;

#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// A timer tick: runs the debounced prompt re-run.
    Tick,
    Engine(Reply),
}

impl Msg {
    /// A plain key press (tests and scripts).
    pub fn key(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    pub fn ch(c: char) -> Msg {
        let mods = if c.is_ascii_uppercase() {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        Msg::Key(KeyEvent::new(KeyCode::Char(c), mods))
    }

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
