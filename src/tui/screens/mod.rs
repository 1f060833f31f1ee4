//! One module per screen, each with its own state, the actions its keys run, and its drawing. The keys
//! themselves are bound in one table, [`crate::tui::keymap`], which also draws the help overlay.

pub mod attribution;
pub mod embedding;
pub mod graph;
pub mod heads;
pub mod inspector;
pub mod lab;
pub mod lab_sweep;
pub mod map;
pub mod notes;
pub mod pairs;
pub mod pruning;

use strum::{EnumCount, EnumIter, EnumProperty, FromRepr, IntoEnumIterator, IntoStaticStr};

/// The screens, in tab order (the number keys 1..=9 pick them in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, EnumCount, FromRepr, IntoStaticStr, EnumProperty)]
pub enum Screen {
    /// The circuit map: every node by block and site, with edges of the selected node.
    #[strum(serialize = "1 Circuit map", props(short = "1 Map"))]
    Map,
    /// The node inspector: the selected node's numbers, edges, exemplars and annotation.
    #[strum(serialize = "2 Node inspector", props(short = "2 Node"))]
    Inspector,
    /// The prompt lab: a live prompt, node magnitudes against a baseline, ablations, the length sweep.
    #[strum(serialize = "3 Prompt lab", props(short = "3 Lab"))]
    Lab,
    /// The notes: every annotated node, filterable.
    #[strum(serialize = "4 Notes", props(short = "4 Notes"))]
    Notes,
    /// The pruning run: losses, the prune config and the block ablations.
    #[strum(serialize = "5 Pruning", props(short = "5 Prune"))]
    Pruning,
    /// One residual channel's embedding and unembedding tokens.
    #[strum(serialize = "6 Embedding", props(short = "6 Embed"))]
    Embedding,
    /// Task pairs run side by side: nodes by |B − A| at the decision token and a head's attention.
    #[strum(serialize = "7 A/B pairs", props(short = "7 Pairs"))]
    Pairs,
    /// The framework lens: every head's scores, the selected head's QK/OV tables, composition and attention.
    #[strum(serialize = "8 Heads", props(short = "8 Heads"))]
    Heads,
    /// The attribution graph of the lab's prompt: nodes by layer and position, edges, pins and supernodes.
    #[strum(serialize = "9 Attribution", props(short = "9 Attr"))]
    Attribution,
}

impl Screen {
    /// The tab label.
    pub fn title(self) -> &'static str {
        self.into()
    }

    /// The tab label on terminals too narrow for [`Screen::title`].
    pub fn short_title(self) -> &'static str {
        self.get_str("short").unwrap_or_else(|| self.title())
    }

    /// The screen after this one, wrapping around (`Tab`).
    pub fn next(self) -> Screen {
        Screen::from_repr((self as usize + 1) % Screen::COUNT).unwrap_or(Screen::Map)
    }

    /// The screen before this one, wrapping around (`Shift-Tab`).
    pub fn prev(self) -> Screen {
        Screen::from_repr((self as usize + Screen::COUNT - 1) % Screen::COUNT).unwrap_or(Screen::Map)
    }

    /// Every screen, in tab order.
    pub fn all() -> impl Iterator<Item = Screen> {
        Screen::iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_cycle_through_every_screen_in_order() {
        let all: Vec<Screen> = Screen::all().collect();
        assert_eq!(all.len(), 9);
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.next(), all[(i + 1) % 9]);
            assert_eq!(s.next().prev(), *s);
            // The title starts with the number key that picks the screen.
            assert!(s.title().starts_with(&(i + 1).to_string()), "{}", s.title());
            assert!(s.short_title().starts_with(&(i + 1).to_string()));
        }
    }
}
