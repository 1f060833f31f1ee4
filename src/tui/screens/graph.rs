//! The keys the circuit map and the node inspector share: walking edges, ablating and annotating the selected
//! node.

use crate::circuit::GraphNode;
use crate::tui::app::App;
use crate::workbench::AblationKind;

/// What the shared keys do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAction {
    /// Moves the edge cursor down the selected node's edge list.
    EdgeDown,
    /// Moves the edge cursor up.
    EdgeUp,
    /// Follow the edge under the edge cursor.
    Follow,
    /// Follows the strongest out-edge that leads to a circuit node.
    FollowOut,
    /// Follows the strongest in-edge that comes from a circuit node.
    FollowIn,
    /// Toggles a zero ablation of the selected node.
    AblateZero,
    /// Toggles a mean ablation of the selected node.
    AblateMean,
    /// Opens the command line on `:label` with the current label.
    EditLabel,
    /// Opens the command line on `:note` with the current note.
    EditNote,
    /// Opens the command line on `:tags` with the current tags.
    EditTags,
    /// Cycles the selected node's status (hypothesis, supported, refuted).
    CycleStatus,
}

/// Runs a key shared by the map and the inspector on the app.
pub fn perform(app: &mut App, a: GraphAction) {
    match a {
        GraphAction::EdgeDown => {
            let n_edges = app.edges().len();
            if n_edges > 0 {
                app.edge_sel = (app.edge_sel + 1).min(n_edges - 1);
            }
        }
        GraphAction::EdgeUp => app.edge_sel = app.edge_sel.saturating_sub(1),
        GraphAction::Follow => app.follow(app.edge_sel),
        GraphAction::FollowOut => follow_strongest(app, false),
        GraphAction::FollowIn => follow_strongest(app, true),
        GraphAction::AblateZero | GraphAction::AblateMean => {
            let kind = if a == GraphAction::AblateMean {
                AblationKind::Mean
            } else {
                AblationKind::Zero
            };
            if let Some(n) = app.selected {
                app.toggle_ablation(n, kind);
            }
        }
        GraphAction::EditLabel => app.edit_field("label"),
        GraphAction::EditNote => app.edit_field("note"),
        GraphAction::EditTags => app.edit_field("tags"),
        GraphAction::CycleStatus => app.cycle_status(),
    }
}

/// Follows the strongest in- or out-edge that leads to a circuit node.
fn follow_strongest(app: &mut App, incoming: bool) {
    let edges = app.edges();
    match edges
        .iter()
        .position(|e| e.incoming == incoming && matches!(e.other, GraphNode::Node(_)))
    {
        Some(i) => app.follow(i),
        None => {
            app.status = format!(
                "no {} edge to a circuit node above the threshold",
                if incoming { "in" } else { "out" }
            )
        }
    }
}
