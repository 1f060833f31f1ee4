//! Every key and command, in one table: the `?` overlay draws it and a test checks that the README lists it.

/// (where, key, what it does).
pub const KEYS: &[(&str, &str, &str)] = &[
    ("any", "?", "this help (j/k scroll it, any other key closes it)"),
    ("any", "q / Ctrl-c", "quit"),
    (
        "any",
        "1 2 3 4 5 6 / Tab / Shift-Tab",
        "circuit map, node inspector, prompt lab, notes, pruning, embedding",
    ),
    ("any", ":", "command line (see the commands below)"),
    (
        "any",
        "/",
        "fuzzy jump to a node by id or label (Up/Down pick, Enter jumps)",
    ),
    ("any", "[ / Backspace", "back in the node history"),
    ("any", "]", "forward in the node history"),
    ("any", "m", "mark / unmark the selected node"),
    ("any", "'", "jump to the next marked node"),
    (
        "any",
        "+ / -",
        "raise / lower the edge-strength threshold (fraction of max |w|)",
    ),
    ("any", "Ctrl-r", "redo an ablation change"),
    (
        "any",
        "E",
        "attach evidence: the lab's prompt with the selected and marked nodes' values and the logit difference",
    ),
    (
        "any",
        "Ctrl-e",
        "attach evidence: the last ablation change, its logit difference and task loss before / after",
    ),
    (
        "map",
        "h j k l / arrows",
        "move between nodes (j/k: sites, h/l: nodes of a site)",
    ),
    ("map", "g / G, PgUp / PgDn", "first / last site, eight sites up / down"),
    ("map", "Enter", "open the node inspector"),
    ("map, node", "J / K", "move the edge cursor down / up"),
    ("map, node", "f", "follow the edge under the edge cursor"),
    ("map, node", "o / i", "follow the strongest out- / in-edge"),
    (
        "map, node",
        "a / A",
        "toggle a zero / mean ablation of the selected node",
    ),
    ("map, node", "c", "edit the selected node's label"),
    ("map, node", "e", "edit its notes (\\n for a new line)"),
    ("map, node", "T", "edit its tags (comma-separated)"),
    ("map, node", "s", "cycle its status: hypothesis, supported, refuted"),
    ("node", "j k / PgUp PgDn", "scroll"),
    ("node", "n / N", "next / previous exemplar quantile"),
    ("node", "z", "zero-centred colour scale on / off (task view)"),
    ("node", "Esc", "back to the map"),
    (
        "lab",
        "e / i / Enter",
        "edit the prompt (Esc stops editing; edits re-run the model)",
    ),
    ("lab", "h l / arrows", "move the token cursor"),
    ("lab", "H / L", "first token / follow the last token"),
    ("lab", "j k", "select a node in the magnitudes table"),
    ("lab", "p", "pin the current run as the baseline"),
    ("lab", "a / A", "toggle a zero / mean ablation of the selected node"),
    ("lab", "u / Ctrl-r", "undo / redo an ablation change"),
    ("lab", "x", "clear all ablations"),
    ("lab", "s / S", "length sweep at the editor cursor / hide it"),
    ("lab", "R", "re-run now"),
    (
        "pruning",
        "j k / PgUp PgDn, g",
        "scroll the prune_config pane, back to its top",
    ),
    ("embedding", "j k / arrows", "next / previous residual channel"),
    ("embedding", "PgUp / PgDn", "16 channels back / forward"),
    ("embedding", "g", "the selected node's channel (residual nodes)"),
    (
        "mouse",
        "click",
        "select a node, tab, edge (twice: follow), table row or token",
    ),
    ("mouse", "wheel", "move / scroll"),
];

/// (command, what it does).
pub const COMMANDS: &[(&str, &str)] = &[
    (":goto ID", "jump to a node, e.g. :goto 0.attn.q[37]"),
    (
        ":ablate [ID] [zero|mean]",
        "toggle an ablation (default: the selected node, zero)",
    ),
    (":clear", "remove all ablations"),
    (":pin", "pin the current run as the baseline"),
    (
        ":sweep FRAGMENT [N]",
        "repeat FRAGMENT 0..N times at the editor cursor (\\n for newline)",
    ),
    (
        ":threshold X",
        "edge-strength threshold, a fraction 0..1 of the largest |weight|",
    ),
    (
        ":label TEXT / :note TEXT / :tags A, B",
        "annotate the selected node (\\n in notes for a new line)",
    ),
    (
        ":status hypothesis|supported|refuted / :confidence X",
        "the selected node's status, confidence 0..1",
    ),
    (
        ":evidence [prompt|ablation]",
        "attach the lab's prompt (default) or the last ablation result to the selected node",
    ),
    (
        ":resolve N",
        "settle a label conflict (from session merge) with candidate N",
    ),
    (":notes [FILTER]", "the notes view, filtered"),
    (
        ":keep [NAME] / :recall NAME|N",
        "keep the prompt in the session / bring a kept one back",
    ),
    (
        ":task [NAME]",
        "show the task, or reopen on the circuit of task NAME (the file beside this one)",
    ),
    (
        ":save / :w",
        "save the session now (it is also saved after every change)",
    ),
    (
        ":export [FILE]",
        "write the markdown report (default: the session's path with .md)",
    ),
    (":wq / :x", "save and quit"),
    (":q / :quit", "quit"),
];
