//! Every key of the normal mode, in one table: [`lookup`] dispatches from it and the `?` overlay draws it, so
//! the two cannot drift apart. Text-entry modes (the prompt editor, `:`, `/`, the notes filter) read keys
//! themselves; the table's rows for `:` and `/` say how.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::AppAction;
use super::screens::attribution::AttributionAction;
use super::screens::embedding::EmbeddingAction;
use super::screens::graph::GraphAction;
use super::screens::heads::HeadsAction;
use super::screens::inspector::InspectorAction;
use super::screens::lab::LabAction;
use super::screens::map::MapAction;
use super::screens::notes::NotesAction;
use super::screens::pairs::PairsAction;
use super::screens::pruning::PruningAction;
use super::screens::Screen;

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every screen (looked up first).
    Any,
    /// The circuit map.
    Map,
    /// The map and the node inspector.
    Graph,
    /// The node inspector.
    Inspector,
    /// The prompt lab.
    Lab,
    /// The notes screen.
    Notes,
    /// The pruning screen.
    Pruning,
    /// The embedding screen.
    Embedding,
    /// The pairs screen.
    Pairs,
    /// The Heads screen.
    Heads,
    /// The Attribution screen.
    Attribution,
}

impl Scope {
    /// The name the help overlay and the README show.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Any => "any",
            Scope::Map => "map",
            Scope::Graph => "map, node",
            Scope::Inspector => "node",
            Scope::Lab => "lab",
            Scope::Notes => "notes",
            Scope::Pruning => "pruning",
            Scope::Embedding => "embedding",
            Scope::Pairs => "pairs",
            Scope::Heads => "heads",
            Scope::Attribution => "attribution",
        }
    }

    /// Whether the binding is live on `screen`.
    pub fn active_on(self, screen: Screen) -> bool {
        match self {
            Scope::Any => true,
            Scope::Map => screen == Screen::Map,
            Scope::Graph => matches!(screen, Screen::Map | Screen::Inspector),
            Scope::Inspector => screen == Screen::Inspector,
            Scope::Lab => screen == Screen::Lab,
            Scope::Notes => screen == Screen::Notes,
            Scope::Pruning => screen == Screen::Pruning,
            Scope::Embedding => screen == Screen::Embedding,
            Scope::Pairs => screen == Screen::Pairs,
            Scope::Heads => screen == Screen::Heads,
            Scope::Attribution => screen == Screen::Attribution,
        }
    }
}

/// A key as bound: the code, and whether Ctrl is held (Shift is part of the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key pressed (a character includes its Shift).
    pub code: KeyCode,
    /// Ctrl must be held (and, when false, must not be).
    pub ctrl: bool,
}

impl Key {
    /// Whether `ev` presses this key. A binding without Ctrl does not fire with Ctrl held, so that Ctrl-e and
    /// e stay apart.
    pub fn matches(self, ev: &KeyEvent) -> bool {
        ev.code == self.code && ev.modifiers.contains(KeyModifiers::CONTROL) == self.ctrl
    }

    /// How the help names the key (arrows are named together, as `arrows`).
    pub fn name(self) -> String {
        let base = match self.code {
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Left | KeyCode::Right | KeyCode::Up | KeyCode::Down => "arrows".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            KeyCode::Backspace => "Backspace".into(),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("Ctrl-{base}")
        } else {
            base
        }
    }
}

/// What a key does: an app-wide action or one screen's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An app-wide action (screens, history, marks, threshold).
    App(AppAction),
    /// An action shared by the map and the inspector.
    Graph(GraphAction),
    /// A map action.
    Map(MapAction),
    /// A node inspector action.
    Inspector(InspectorAction),
    /// A prompt lab action.
    Lab(LabAction),
    /// A notes screen action.
    Notes(NotesAction),
    /// A pruning screen action.
    Pruning(PruningAction),
    /// An embedding screen action.
    Embedding(EmbeddingAction),
    /// A pairs screen action.
    Pairs(PairsAction),
    /// A Heads screen action.
    Heads(HeadsAction),
    /// An Attribution screen action.
    Attribution(AttributionAction),
}

/// One row of the help: the keys as written, what they do, and the keys themselves with their actions.
#[derive(Debug)]
pub struct Binding {
    /// Where the keys are live (also the help's grouping).
    pub scope: Scope,
    /// The keys as the help writes them (`j k / arrows`).
    pub keys: &'static str,
    /// What they do, one line in the help.
    pub help: &'static str,
    /// Each key and the action it dispatches; [`lookup`] reads these.
    pub binds: &'static [(Key, Action)],
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}

const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

use Action as A;
use AppAction as G;
use AttributionAction as At;
use EmbeddingAction as Em;
use GraphAction as Gr;
use HeadsAction as Hd;
use InspectorAction as In;
use KeyCode as K;
use LabAction as L;
use MapAction as M;
use NotesAction as N;
use PairsAction as Pa;
use PruningAction as P;

/// The table. Within the rows live on a screen, a key is bound once (a test checks it).
pub const BINDINGS: &[Binding] = &[
    Binding {
        scope: Scope::Any,
        keys: "?",
        help: "this help (j/k scroll it, any other key closes it)",
        binds: &[(ch('?'), A::App(G::Help))],
    },
    Binding {
        scope: Scope::Any,
        keys: "q / Ctrl-c",
        help: "quit",
        binds: &[(ch('q'), A::App(G::Quit)), (ctrl('c'), A::App(G::Quit))],
    },
    Binding {
        scope: Scope::Any,
        keys: "1 2 3 4 5 6 7 8 9 / Tab / Shift-Tab",
        help: "circuit map, node inspector, prompt lab, notes, pruning, embedding, A/B pairs, heads, attribution",
        binds: &[
            (ch('1'), A::App(G::Screen(Screen::Map))),
            (ch('2'), A::App(G::Screen(Screen::Inspector))),
            (ch('3'), A::App(G::Screen(Screen::Lab))),
            (ch('4'), A::App(G::Screen(Screen::Notes))),
            (ch('5'), A::App(G::Screen(Screen::Pruning))),
            (ch('6'), A::App(G::Screen(Screen::Embedding))),
            (ch('7'), A::App(G::Screen(Screen::Pairs))),
            (ch('8'), A::App(G::Screen(Screen::Heads))),
            (ch('9'), A::App(G::Screen(Screen::Attribution))),
            (code(K::Tab), A::App(G::NextScreen)),
            (code(K::BackTab), A::App(G::PrevScreen)),
        ],
    },
    Binding {
        scope: Scope::Any,
        keys: ":",
        help: "command line (see the commands below)",
        binds: &[(ch(':'), A::App(G::CommandLine))],
    },
    Binding {
        scope: Scope::Any,
        keys: "/",
        help: "fuzzy jump to a node by id or label (Up/Down pick, Enter jumps)",
        binds: &[(ch('/'), A::App(G::Search))],
    },
    Binding {
        scope: Scope::Any,
        keys: "[ / Backspace",
        help: "back in the node history",
        binds: &[(ch('['), A::App(G::Back)), (code(K::Backspace), A::App(G::Back))],
    },
    Binding {
        scope: Scope::Any,
        keys: "]",
        help: "forward in the node history",
        binds: &[(ch(']'), A::App(G::Forward))],
    },
    Binding {
        scope: Scope::Any,
        keys: "m",
        help: "mark / unmark the selected node",
        binds: &[(ch('m'), A::App(G::ToggleMark))],
    },
    Binding {
        scope: Scope::Any,
        keys: "'",
        help: "jump to the next marked node",
        binds: &[(ch('\''), A::App(G::NextMark))],
    },
    Binding {
        scope: Scope::Any,
        keys: "+ = / -",
        help: "raise / lower the edge-strength threshold (fraction of max |w|)",
        binds: &[
            (ch('+'), A::App(G::ThresholdUp)),
            (ch('='), A::App(G::ThresholdUp)),
            (ch('-'), A::App(G::ThresholdDown)),
        ],
    },
    Binding {
        scope: Scope::Any,
        keys: "Ctrl-r",
        help: "redo an ablation change",
        binds: &[(ctrl('r'), A::App(G::Redo))],
    },
    Binding {
        scope: Scope::Any,
        keys: "E",
        help: "attach evidence: the lab's prompt with the selected and marked nodes' values and the logit difference",
        binds: &[(ch('E'), A::App(G::PromptEvidence))],
    },
    Binding {
        scope: Scope::Any,
        keys: "Ctrl-e",
        help: "attach evidence: the last ablation change, its logit difference and task loss before / after",
        binds: &[(ctrl('e'), A::App(G::AblationEvidence))],
    },
    Binding {
        scope: Scope::Map,
        keys: "h j k l / arrows",
        help: "move between nodes (j/k: sites, h/l: nodes of a site)",
        binds: &[
            (ch('h'), A::Map(M::Move(0, -1))),
            (code(K::Left), A::Map(M::Move(0, -1))),
            (ch('l'), A::Map(M::Move(0, 1))),
            (code(K::Right), A::Map(M::Move(0, 1))),
            (ch('j'), A::Map(M::Move(1, 0))),
            (code(K::Down), A::Map(M::Move(1, 0))),
            (ch('k'), A::Map(M::Move(-1, 0))),
            (code(K::Up), A::Map(M::Move(-1, 0))),
        ],
    },
    Binding {
        scope: Scope::Map,
        keys: "g / G, Home / End",
        help: "first / last site",
        binds: &[
            (ch('g'), A::Map(M::First)),
            (code(K::Home), A::Map(M::First)),
            (ch('G'), A::Map(M::Last)),
            (code(K::End), A::Map(M::Last)),
        ],
    },
    Binding {
        scope: Scope::Map,
        keys: "PgUp / PgDn",
        help: "eight sites up / down",
        binds: &[
            (code(K::PageUp), A::Map(M::Move(-8, 0))),
            (code(K::PageDown), A::Map(M::Move(8, 0))),
        ],
    },
    Binding {
        scope: Scope::Map,
        keys: "Enter",
        help: "open the node inspector",
        binds: &[(code(K::Enter), A::Map(M::Inspect))],
    },
    Binding {
        scope: Scope::Map,
        keys: "L",
        help: "labels on every node / only on the selected and marked nodes",
        binds: &[(ch('L'), A::Map(M::ToggleLabels))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "J / K",
        help: "move the edge cursor down / up",
        binds: &[(ch('J'), A::Graph(Gr::EdgeDown)), (ch('K'), A::Graph(Gr::EdgeUp))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "f",
        help: "follow the edge under the edge cursor",
        binds: &[(ch('f'), A::Graph(Gr::Follow))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "o / i",
        help: "follow the strongest out- / in-edge",
        binds: &[(ch('o'), A::Graph(Gr::FollowOut)), (ch('i'), A::Graph(Gr::FollowIn))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "a / A",
        help: "toggle a zero / mean ablation of the selected node",
        binds: &[(ch('a'), A::Graph(Gr::AblateZero)), (ch('A'), A::Graph(Gr::AblateMean))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "c",
        help: "edit the selected node's label",
        binds: &[(ch('c'), A::Graph(Gr::EditLabel))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "e",
        help: "edit its notes (\\n for a new line)",
        binds: &[(ch('e'), A::Graph(Gr::EditNote))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "T",
        help: "edit its tags (comma-separated)",
        binds: &[(ch('T'), A::Graph(Gr::EditTags))],
    },
    Binding {
        scope: Scope::Graph,
        keys: "s",
        help: "cycle its status: hypothesis, supported, refuted",
        binds: &[(ch('s'), A::Graph(Gr::CycleStatus))],
    },
    Binding {
        scope: Scope::Inspector,
        keys: "j k / arrows, PgUp PgDn",
        help: "scroll",
        binds: &[
            (ch('j'), A::Inspector(In::Scroll(1))),
            (code(K::Down), A::Inspector(In::Scroll(1))),
            (ch('k'), A::Inspector(In::Scroll(-1))),
            (code(K::Up), A::Inspector(In::Scroll(-1))),
            (code(K::PageDown), A::Inspector(In::Scroll(10))),
            (code(K::PageUp), A::Inspector(In::Scroll(-10))),
        ],
    },
    Binding {
        scope: Scope::Inspector,
        keys: "n / N",
        help: "next / previous exemplar quantile",
        binds: &[
            (ch('n'), A::Inspector(In::NextQuantile)),
            (ch('N'), A::Inspector(In::PrevQuantile)),
        ],
    },
    Binding {
        scope: Scope::Inspector,
        keys: "z",
        help: "zero-centred colour scale on / off (task view)",
        binds: &[(ch('z'), A::Inspector(In::ToggleZeroCentre))],
    },
    Binding {
        scope: Scope::Inspector,
        keys: "Esc",
        help: "back to the map",
        binds: &[(code(K::Esc), A::Inspector(In::BackToMap))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "e / i / Enter",
        help: "edit the prompt (Esc stops editing; edits re-run the model)",
        binds: &[
            (ch('e'), A::Lab(L::Edit)),
            (ch('i'), A::Lab(L::Edit)),
            (code(K::Enter), A::Lab(L::Edit)),
        ],
    },
    Binding {
        scope: Scope::Lab,
        keys: "h l / arrows",
        help: "move the token cursor",
        binds: &[
            (ch('h'), A::Lab(L::TokenLeft)),
            (code(K::Left), A::Lab(L::TokenLeft)),
            (ch('l'), A::Lab(L::TokenRight)),
            (code(K::Right), A::Lab(L::TokenRight)),
        ],
    },
    Binding {
        scope: Scope::Lab,
        keys: "H / L, Home / End",
        help: "first token / follow the last token",
        binds: &[
            (ch('H'), A::Lab(L::FirstToken)),
            (code(K::Home), A::Lab(L::FirstToken)),
            (ch('L'), A::Lab(L::FollowLast)),
            (code(K::End), A::Lab(L::FollowLast)),
        ],
    },
    Binding {
        scope: Scope::Lab,
        keys: "j k / arrows",
        help: "select a node in the magnitudes table",
        binds: &[
            (ch('j'), A::Lab(L::TableDown)),
            (code(K::Down), A::Lab(L::TableDown)),
            (ch('k'), A::Lab(L::TableUp)),
            (code(K::Up), A::Lab(L::TableUp)),
        ],
    },
    Binding {
        scope: Scope::Lab,
        keys: "p",
        help: "pin the current run as the baseline",
        binds: &[(ch('p'), A::Lab(L::Pin))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "a / A",
        help: "toggle a zero / mean ablation of the selected node",
        binds: &[(ch('a'), A::Lab(L::AblateZero)), (ch('A'), A::Lab(L::AblateMean))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "u / Ctrl-r",
        help: "undo / redo an ablation change",
        binds: &[(ch('u'), A::Lab(L::Undo))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "x",
        help: "clear all ablations",
        binds: &[(ch('x'), A::Lab(L::Clear))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "s / S",
        help: "length sweep at the editor cursor / hide it",
        binds: &[(ch('s'), A::Lab(L::Sweep)), (ch('S'), A::Lab(L::HideSweep))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "< / >",
        help: "read the sweep at the previous / next insertion count",
        binds: &[
            (ch('<'), A::Lab(L::SweepPoint(-1))),
            (ch('>'), A::Lab(L::SweepPoint(1))),
        ],
    },
    Binding {
        scope: Scope::Lab,
        keys: "o",
        help: "sort the table by raw change / by change in scan standard deviations (Δ/σ)",
        binds: &[(ch('o'), A::Lab(L::ToggleSortByStd))],
    },
    Binding {
        scope: Scope::Lab,
        keys: "R",
        help: "re-run now",
        binds: &[(ch('R'), A::Lab(L::Rerun))],
    },
    Binding {
        scope: Scope::Notes,
        keys: "j k / arrows",
        help: "move through the annotations",
        binds: &[
            (ch('j'), A::Notes(N::Down)),
            (code(K::Down), A::Notes(N::Down)),
            (ch('k'), A::Notes(N::Up)),
            (code(K::Up), A::Notes(N::Up)),
        ],
    },
    Binding {
        scope: Scope::Notes,
        keys: "Enter",
        help: "go to the node on the map",
        binds: &[(code(K::Enter), A::Notes(N::Jump))],
    },
    Binding {
        scope: Scope::Notes,
        keys: "f",
        help: "filter by id, label, notes, tags, status, `conflict`, `auto` or `score>=0.7`",
        binds: &[(ch('f'), A::Notes(N::Filter))],
    },
    Binding {
        scope: Scope::Notes,
        keys: "s",
        help: "sort by node, by explanation score best first, worst first",
        binds: &[(ch('s'), A::Notes(N::CycleSort))],
    },
    Binding {
        scope: Scope::Notes,
        keys: "Esc",
        help: "clear the filter",
        binds: &[(code(K::Esc), A::Notes(N::ClearFilter))],
    },
    Binding {
        scope: Scope::Pruning,
        keys: "j k / arrows, PgUp PgDn",
        help: "scroll the prune_config pane",
        binds: &[
            (ch('j'), A::Pruning(P::Scroll(1))),
            (code(K::Down), A::Pruning(P::Scroll(1))),
            (ch('k'), A::Pruning(P::Scroll(-1))),
            (code(K::Up), A::Pruning(P::Scroll(-1))),
            (code(K::PageDown), A::Pruning(P::Scroll(10))),
            (code(K::PageUp), A::Pruning(P::Scroll(-10))),
        ],
    },
    Binding {
        scope: Scope::Pruning,
        keys: "g / Home",
        help: "back to the pane's top",
        binds: &[(ch('g'), A::Pruning(P::Top)), (code(K::Home), A::Pruning(P::Top))],
    },
    Binding {
        scope: Scope::Embedding,
        keys: "h j k l / arrows",
        help: "next / previous residual channel",
        binds: &[
            (ch('j'), A::Embedding(Em::Channel(1))),
            (code(K::Down), A::Embedding(Em::Channel(1))),
            (ch('l'), A::Embedding(Em::Channel(1))),
            (code(K::Right), A::Embedding(Em::Channel(1))),
            (ch('k'), A::Embedding(Em::Channel(-1))),
            (code(K::Up), A::Embedding(Em::Channel(-1))),
            (ch('h'), A::Embedding(Em::Channel(-1))),
            (code(K::Left), A::Embedding(Em::Channel(-1))),
        ],
    },
    Binding {
        scope: Scope::Embedding,
        keys: "PgUp / PgDn",
        help: "16 channels back / forward",
        binds: &[
            (code(K::PageUp), A::Embedding(Em::Channel(-16))),
            (code(K::PageDown), A::Embedding(Em::Channel(16))),
        ],
    },
    Binding {
        scope: Scope::Embedding,
        keys: "g",
        help: "the selected node's channel (residual nodes)",
        binds: &[(ch('g'), A::Embedding(Em::SelectedChannel))],
    },
    Binding {
        scope: Scope::Pairs,
        keys: "j k / arrows",
        help: "select a node (its head's attention follows)",
        binds: &[
            (ch('j'), A::Pairs(Pa::Move(1))),
            (code(K::Down), A::Pairs(Pa::Move(1))),
            (ch('k'), A::Pairs(Pa::Move(-1))),
            (code(K::Up), A::Pairs(Pa::Move(-1))),
        ],
    },
    Binding {
        scope: Scope::Pairs,
        keys: "PgUp / PgDn",
        help: "ten nodes up / down",
        binds: &[
            (code(K::PageUp), A::Pairs(Pa::Move(-10))),
            (code(K::PageDown), A::Pairs(Pa::Move(10))),
        ],
    },
    Binding {
        scope: Scope::Pairs,
        keys: "h l / arrows",
        help: "previous / next head",
        binds: &[
            (ch('h'), A::Pairs(Pa::Head(-1))),
            (code(K::Left), A::Pairs(Pa::Head(-1))),
            (ch('l'), A::Pairs(Pa::Head(1))),
            (code(K::Right), A::Pairs(Pa::Head(1))),
        ],
    },
    Binding {
        scope: Scope::Pairs,
        keys: "n / N",
        help: "next / previous pair's attention",
        binds: &[(ch('n'), A::Pairs(Pa::Pair(1))), (ch('N'), A::Pairs(Pa::Pair(-1)))],
    },
    Binding {
        scope: Scope::Pairs,
        keys: "R",
        help: "run the pairs again under the lab's ablations",
        binds: &[(ch('R'), A::Pairs(Pa::Rerun))],
    },
    Binding {
        scope: Scope::Heads,
        keys: "h j k l / arrows",
        help: "select a head (h/l: heads, j/k: layers)",
        binds: &[
            (ch('h'), A::Heads(Hd::Move(0, -1))),
            (code(K::Left), A::Heads(Hd::Move(0, -1))),
            (ch('l'), A::Heads(Hd::Move(0, 1))),
            (code(K::Right), A::Heads(Hd::Move(0, 1))),
            (ch('j'), A::Heads(Hd::Move(1, 0))),
            (code(K::Down), A::Heads(Hd::Move(1, 0))),
            (ch('k'), A::Heads(Hd::Move(-1, 0))),
            (code(K::Up), A::Heads(Hd::Move(-1, 0))),
        ],
    },
    Binding {
        scope: Scope::Heads,
        keys: "s",
        help: "colour the grid by the next score: induction, previous-token, OV copying, sink share",
        binds: &[(ch('s'), A::Heads(Hd::CycleScore))],
    },
    Binding {
        scope: Scope::Heads,
        keys: "c",
        help: "composition heat map: Q, K or V",
        binds: &[(ch('c'), A::Heads(Hd::CycleComposition))],
    },
    Binding {
        scope: Scope::Heads,
        keys: "Enter",
        help: "open the head's q/k/v channels on the circuit map",
        binds: &[(code(K::Enter), A::Heads(Hd::Open))],
    },
    Binding {
        scope: Scope::Heads,
        keys: "R",
        help: "recompute the attention map on the lab's current prompt",
        binds: &[(ch('R'), A::Heads(Hd::Refresh))],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "h j k l / arrows",
        help: "select a node (h/l: positions, j/k: layer rows)",
        binds: &[
            (ch('h'), A::Attribution(At::Move(0, -1))),
            (code(K::Left), A::Attribution(At::Move(0, -1))),
            (ch('l'), A::Attribution(At::Move(0, 1))),
            (code(K::Right), A::Attribution(At::Move(0, 1))),
            (ch('j'), A::Attribution(At::Move(1, 0))),
            (code(K::Down), A::Attribution(At::Move(1, 0))),
            (ch('k'), A::Attribution(At::Move(-1, 0))),
            (code(K::Up), A::Attribution(At::Move(-1, 0))),
        ],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "n / N",
        help: "next / previous node in the selected cell",
        binds: &[
            (ch('n'), A::Attribution(At::Cycle(1))),
            (ch('N'), A::Attribution(At::Cycle(-1))),
        ],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "J / K",
        help: "move the edge cursor down / up (incoming edges, then outgoing, strongest first)",
        binds: &[
            (ch('J'), A::Attribution(At::Edge(1))),
            (ch('K'), A::Attribution(At::Edge(-1))),
        ],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "Enter / f",
        help: "walk along the edge under the edge cursor to its other end",
        binds: &[
            (code(K::Enter), A::Attribution(At::Follow)),
            (ch('f'), A::Attribution(At::Follow)),
        ],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "p",
        help: "pin / unpin the selected node (kept in the session)",
        binds: &[(ch('p'), A::Attribution(At::Pin))],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "s",
        help: "group the pinned nodes into a named supernode (:supernode NAME)",
        binds: &[(ch('s'), A::Attribution(At::Group))],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "< / >",
        help: "lower / raise the node threshold by 0.05 and recompute",
        binds: &[
            (ch('<'), A::Attribution(At::Threshold(-1))),
            (ch('>'), A::Attribution(At::Threshold(1))),
        ],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "g",
        help: "go to the node's channel on the circuit map (the inspector when the circuit lacks it)",
        binds: &[(ch('g'), A::Attribution(At::Open))],
    },
    Binding {
        scope: Scope::Attribution,
        keys: "R",
        help: "recompute the graph on the lab's current prompt",
        binds: &[(ch('R'), A::Attribution(At::Refresh))],
    },
];

/// (what, what it does): the mouse, which acts on what was drawn where rather than through the table.
pub const MOUSE: &[(&str, &str)] = &[
    ("click", "select a node, tab, edge (twice: follow), table row or token"),
    ("wheel", "move / scroll"),
];

/// The action `ev` runs on `screen` in the normal mode: the first live binding that has the key.
pub fn lookup(screen: Screen, ev: &KeyEvent) -> Option<Action> {
    BINDINGS
        .iter()
        .filter(|b| b.scope.active_on(screen))
        .flat_map(|b| b.binds.iter())
        .find(|(k, _)| k.matches(ev))
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words of a keys column: `g / G, Home / End` → g, G, Home, End.
    fn words(keys: &str) -> Vec<&str> {
        keys.split([' ', ',', '(', ')'])
            // `/` separates alternatives, except in the row of the `/` key itself.
            .filter(|w| !w.is_empty() && (*w != "/" || keys == "/"))
            .collect()
    }

    #[test]
    fn every_bound_key_is_named_in_its_row_and_every_named_key_is_bound() {
        for b in BINDINGS {
            let named = words(b.keys);
            for (k, _) in b.binds {
                assert!(
                    named.contains(&k.name().as_str()),
                    "{:?}: `{}` not in {:?}",
                    b.help,
                    k.name(),
                    b.keys
                );
            }
            for w in &named {
                // `u / Ctrl-r`: the lab's row names the global redo beside its undo.
                let bound_here = b.binds.iter().any(|(k, _)| k.name() == *w);
                let bound_globally = BINDINGS
                    .iter()
                    .filter(|o| o.scope == Scope::Any)
                    .flat_map(|o| o.binds.iter())
                    .any(|(k, _)| k.name() == *w);
                assert!(
                    bound_here || bound_globally,
                    "{:?} names `{w}`, which nothing binds",
                    b.keys
                );
            }
        }
    }

    #[test]
    fn no_key_is_bound_twice_on_a_screen() {
        for screen in Screen::all() {
            let live: Vec<&(Key, Action)> = BINDINGS
                .iter()
                .filter(|b| b.scope.active_on(screen))
                .flat_map(|b| b.binds.iter())
                .collect();
            for (i, (k, _)) in live.iter().enumerate() {
                assert!(
                    live[i + 1..].iter().all(|(o, _)| o != k),
                    "{screen:?}: {} is bound twice",
                    k.name()
                );
            }
        }
    }

    #[test]
    fn lookup_finds_each_binding_on_its_screens() {
        for b in BINDINGS {
            for screen in Screen::all().filter(|s| b.scope.active_on(*s)) {
                for (k, a) in b.binds {
                    let ev = KeyEvent::new(
                        k.code,
                        if k.ctrl {
                            KeyModifiers::CONTROL
                        } else {
                            KeyModifiers::NONE
                        },
                    );
                    assert_eq!(lookup(screen, &ev), Some(*a), "{screen:?} {}", k.name());
                }
            }
        }
        // Shift is part of the character; Ctrl is not.
        let shifted = KeyEvent::new(KeyCode::Char('E'), KeyModifiers::SHIFT);
        assert_eq!(lookup(Screen::Map, &shifted), Some(A::App(G::PromptEvidence)));
        let ctrl_a = KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL);
        assert_eq!(lookup(Screen::Map, &ctrl_a), None);
        // A screen's keys are dead elsewhere.
        let z = KeyEvent::new(KeyCode::Char('z'), KeyModifiers::NONE);
        assert_eq!(lookup(Screen::Map, &z), None);
    }
}
