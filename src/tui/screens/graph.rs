//! The keys the circuit map and the node inspector share: walking edges, ablating and annotating the selected
//! node.

use crate::circuit::GraphNode;
use crate::tui::app::App;
use crate::workbench::AblationKind;

/// What the shared keys do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphAction {
    EdgeDown,
    EdgeUp,
    /// Follow the edge under the edge cursor.
    Follow,
    FollowOut,
    FollowIn,
    AblateZero,
    AblateMean,
    EditLabel,
    EditNote,
    EditTags,
    CycleStatus,
}

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
