//! The `:` command line: every command as a value, parsed with [`FromStr`] and written back with [`Display`](std::fmt::Display)
//! (what it parses to, written the canonical way), so that parsing is tested on its own and the app only runs
//! well-formed commands.

use std::fmt;
use std::str::FromStr;

use super::app::{App, Screen};
use crate::circuit::{NodeId, NodeIdError};
use crate::session::Status;
use crate::workbench::AblationKind;

/// One `:` command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `:q`, `:quit`, `:q!`.
    Quit,
    /// `:wq`, `:x`: save, then quit.
    SaveQuit,
    /// `:w`, `:save`.
    Save,
    /// `:help`: opens the help overlay.
    Help,
    /// `:goto ID`, `:g ID`.
    Goto(NodeId),
    /// `:ablate [ID] [zero|mean]`: None is the selected node.
    Ablate {
        /// The node to ablate; None is the selected node.
        node: Option<NodeId>,
        /// Zero or mean ablation (zero when not given).
        kind: AblationKind,
    },
    /// `:clear`: every ablation off.
    Clear,
    /// `:task [NAME]`: None shows the task.
    Task(Option<String>),
    /// `:threshold X`, `:t X`: a fraction in 0..=1.
    Threshold(f64),
    /// `:pin`: the current run becomes the baseline.
    Pin,
    /// `:truncate`: toggles keeping the last block_size tokens of a prompt longer than the context.
    Truncate,
    /// `:sweep [FRAGMENT [N]]`: None keeps the current fragment / count.
    Sweep {
        /// The text inserted repeatedly (escapes as in [`unescape`]).
        fragment: Option<String>,
        /// The largest number of insertions.
        max: Option<usize>,
    },
    /// `:label`, `:note`, `:tags`, `:status`, `:confidence`, `:resolve` on the selected node.
    Annotate(Annotate),
    /// `:evidence [prompt|ablation]`.
    Evidence(EvidenceKind),
    /// `:accept`: the selected node's automatic explanation becomes its label, its score the evidence.
    Accept,
    /// `:keep [NAME]`: None names it by number.
    Keep(Option<String>),
    /// `:recall NAME|N`.
    Recall(String),
    /// `:export [FILE]`: None is the session's path with `.md`.
    Export(Option<String>),
    /// `:notes [FILTER]`, `:filter [FILTER]`.
    Notes(String),
    /// `:pairs [N]`: run N task pairs and compare the nodes at the decision token (None: the default count).
    Pairs(Option<usize>),
    /// `:summary [TEXT]`: set the session's summary; None opens the current one for editing.
    Summary(Option<String>),
    /// `:supernode NAME`: group the Attribution screen's pinned nodes under NAME (empty: refused when run).
    Supernode(String),
    /// `:unpin`: every pin and supernode of the Attribution screen off.
    Unpin,
    /// `:bridge on|off`: the lab's ablations also steer the dense model through the bridges (a bridged model).
    Bridge(bool),
}

/// A change to the selected node's annotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Annotate {
    /// `:label TEXT`: the node's short name, shown on the map.
    Label(String),
    /// `:note TEXT`: the node's free-text note.
    Note(String),
    /// `:tags A B …`: replaces the node's tags.
    Tags(Vec<String>),
    /// `:status hypothesis|supported|refuted`.
    Status(Status),
    /// None clears it.
    Confidence(Option<f32>),
    /// The candidate's number as shown (1-based).
    Resolve(usize),
}

/// What `:evidence` attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// The current run's activation of the selected node.
    Prompt,
    /// The last ablation change and its effect on the task.
    Ablation,
}

/// Why a command line does not parse; the messages are what the status bar shows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// An empty line (the app ignores it).
    #[error("no command")]
    Empty,
    /// The first word is no command.
    #[error("unknown command `{0}` (? lists them)")]
    Unknown(String),
    /// A node id that does not parse or is not in the circuit.
    #[error(transparent)]
    Node(#[from] NodeIdError),
    /// `:ablate` with a kind other than `zero` or `mean`.
    #[error("unknown ablation `{0}` (zero or mean)")]
    AblationKind(String),
    /// `:threshold` without a number in 0..=1.
    #[error("threshold takes a fraction in 0..1")]
    Threshold,
    /// `:status` with an unknown status.
    #[error("status takes hypothesis, supported or refuted")]
    Status,
    /// `:confidence` without a number in 0..=1.
    #[error("confidence takes a number in 0..1")]
    Confidence,
    /// `:resolve` without a positive candidate number.
    #[error("resolve takes the number of a candidate (1, 2, …)")]
    Resolve,
    /// `:evidence` with a kind other than `prompt` or `ablation`.
    #[error("evidence takes `prompt` (default) or `ablation`")]
    Evidence,
    /// `:pairs` with a count that is not a number in 1..=`MAX_PAIRS`.
    #[error("pairs takes a number of pairs, 1 to {max}", max = crate::workbench::engine::MAX_PAIRS)]
    Pairs,
    /// `:bridge` without `on` or `off`.
    #[error("bridge takes on or off")]
    Bridge,
    /// A quoted argument with no closing quote.
    #[error("unclosed quote: a quoted fragment ends with `\"` (write `\\\"` for a quote inside it)")]
    Unclosed,
    /// `:sweep`'s count after the fragment is not a number.
    #[error("sweep takes a repeat count after the fragment, not `{0}`")]
    SweepCount(String),
    /// `:sweep ""`: nothing to insert.
    #[error("the quoted fragment is empty")]
    EmptyFragment,
}

/// The backslash escapes of command arguments: `\n` a new line, `\t` a tab, `\\` one backslash (so `\\n` is a
/// literal backslash and n), `\"` a double quote; a backslash before anything else stays as typed.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// The inverse of [`unescape`], for writing an argument back (and prefilling the command line).
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('\t', "\\t")
}

/// A quoted argument at the start of `s` (which starts with `"`): its unescaped content up to the closing quote
/// that no backslash escapes, and the rest of `s` after it. None when the quote is not closed.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((unescape(&body[..i]), &body[i + 1..])),
            _ => {}
        }
    }
    None
}

/// `:sweep` arguments: `"FRAGMENT" [N]` (the quotes delimit, so the fragment may begin or end with spaces or be
/// a number), or unquoted `FRAGMENT [N]` (N is the last word when it is a number).
fn sweep_args(rest: &str) -> Result<Command, CommandError> {
    if rest.starts_with('"') {
        let (fragment, after) = quoted(rest).ok_or(CommandError::Unclosed)?;
        let after = after.trim();
        let max = match after {
            "" => None,
            n => Some(
                n.parse::<usize>()
                    .map_err(|_| CommandError::SweepCount(n.to_string()))?,
            ),
        };
        if fragment.is_empty() {
            return Err(CommandError::EmptyFragment);
        }
        return Ok(Command::Sweep {
            fragment: Some(fragment),
            max,
        });
    }
    let (fragment, max) = match rest.rsplit_once(' ') {
        Some((f, n)) if n.parse::<usize>().is_ok() => (f, n.parse().ok()),
        _ if rest.parse::<usize>().is_ok() => ("", rest.parse().ok()),
        _ => (rest, None),
    };
    Ok(Command::Sweep {
        fragment: non_empty(fragment).map(|f| unescape(&f)),
        max,
    })
}

fn ablation_kind(s: &str) -> Option<AblationKind> {
    match s {
        "zero" => Some(AblationKind::Zero),
        "mean" => Some(AblationKind::Mean),
        _ => None,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl FromStr for Command {
    type Err = CommandError;

    /// Reads node ids in our spelling only; [`Command::parse_for`] also reads TransformerLens's.
    fn from_str(line: &str) -> Result<Command, CommandError> {
        Command::parse_for(line, None)
    }
}

impl Command {
    /// Parses a command line; node ids may be spelled TransformerLens's way (`blocks.1.attn.hook_q[2:5]`) when
    /// the model's `(n_layer, d_head)` is given.
    pub fn parse_for(line: &str, shape: Option<(usize, usize)>) -> Result<Command, CommandError> {
        let node = |t: &str| -> Result<NodeId, NodeIdError> {
            match shape {
                Some((n_layer, d_head)) => NodeId::parse_for(t, n_layer, d_head),
                None => t.parse(),
            }
        };
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').map_or((line, ""), |(a, b)| (a, b.trim()));
        Ok(match cmd {
            "" => return Err(CommandError::Empty),
            "wq" | "x" => Command::SaveQuit,
            "q" | "quit" | "q!" => Command::Quit,
            "save" | "w" => Command::Save,
            "help" => Command::Help,
            "goto" | "g" => Command::Goto(node(rest)?),
            "ablate" => {
                let mut parts = rest.split_whitespace().peekable();
                // A leading kind (`:ablate mean`) is the selected node's ablation.
                let node = match parts.peek() {
                    Some(w) if ablation_kind(w).is_none() => Some(node(parts.next().unwrap_or_default())?),
                    _ => None,
                };
                let kind = match parts.next() {
                    None => AblationKind::Zero,
                    Some(k) => ablation_kind(k).ok_or_else(|| CommandError::AblationKind(k.to_string()))?,
                };
                Command::Ablate { node, kind }
            }
            "clear" => Command::Clear,
            "task" => Command::Task(non_empty(rest)),
            "threshold" | "t" => match rest.parse::<f64>() {
                Ok(t) if (0.0..=1.0).contains(&t) => Command::Threshold(t),
                _ => return Err(CommandError::Threshold),
            },
            "pin" => Command::Pin,
            "truncate" => Command::Truncate,
            "sweep" => sweep_args(rest)?,
            "label" => Command::Annotate(Annotate::Label(unescape(rest).trim().to_string())),
            "note" => Command::Annotate(Annotate::Note(unescape(rest))),
            "tags" | "tag" => Command::Annotate(Annotate::Tags(
                unescape(rest)
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
            )),
            "status" => Command::Annotate(Annotate::Status(Status::parse(rest).ok_or(CommandError::Status)?)),
            "confidence" | "conf" => Command::Annotate(Annotate::Confidence(match rest.parse::<f32>() {
                Ok(c) if (0.0..=1.0).contains(&c) => Some(c),
                _ if rest.is_empty() => None,
                _ => return Err(CommandError::Confidence),
            })),
            "resolve" => Command::Annotate(Annotate::Resolve(rest.parse().map_err(|_| CommandError::Resolve)?)),
            "evidence" => Command::Evidence(match rest {
                "" | "prompt" => EvidenceKind::Prompt,
                "ablation" => EvidenceKind::Ablation,
                _ => return Err(CommandError::Evidence),
            }),
            "accept" => Command::Accept,
            "keep" => Command::Keep(non_empty(rest)),
            "recall" => Command::Recall(rest.to_string()),
            "export" => Command::Export(non_empty(rest)),
            "notes" | "filter" => Command::Notes(rest.to_string()),
            "pairs" => Command::Pairs(match rest.parse::<usize>() {
                Ok(n) if (1..=crate::workbench::engine::MAX_PAIRS).contains(&n) => Some(n),
                _ if rest.is_empty() => None,
                _ => return Err(CommandError::Pairs),
            }),
            "summary" => Command::Summary(non_empty(rest).map(|r| unescape(&r))),
            "supernode" => Command::Supernode(unescape(rest).trim().to_string()),
            "unpin" => Command::Unpin,
            "bridge" => Command::Bridge(match rest {
                "on" => true,
                "off" => false,
                _ => return Err(CommandError::Bridge),
            }),
            // `:summary` alone opens the current text for editing, so clearing it needs its own spelling.
            "summary!" if rest.is_empty() => Command::Summary(Some(String::new())),
            other => return Err(CommandError::Unknown(other.to_string())),
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |name: &str, arg: &Option<String>| match arg {
            Some(a) => format!("{name} {a}"),
            None => name.to_string(),
        };
        let s = match self {
            Command::Quit => "quit".to_string(),
            Command::SaveQuit => "wq".to_string(),
            Command::Save => "save".to_string(),
            Command::Help => "help".to_string(),
            Command::Goto(n) => format!("goto {n}"),
            Command::Ablate { node, kind } => match node {
                Some(n) => format!("ablate {n} {}", kind.name()),
                None => format!("ablate {}", kind.name()),
            },
            Command::Clear => "clear".to_string(),
            Command::Task(t) => opt("task", t),
            Command::Threshold(t) => format!("threshold {t}"),
            Command::Pin => "pin".to_string(),
            Command::Truncate => "truncate".to_string(),
            Command::Sweep { fragment, max } => {
                let mut s = "sweep".to_string();
                if let Some(fr) = fragment {
                    s += &format!(" \"{}\"", escape(fr).replace('"', "\\\""));
                }
                if let Some(n) = max {
                    s += &format!(" {n}");
                }
                s
            }
            Command::Annotate(a) => match a {
                Annotate::Label(l) => format!("label {}", escape(l)),
                Annotate::Note(n) => format!("note {}", escape(n)),
                Annotate::Tags(t) => format!("tags {}", escape(&t.join(", "))),
                Annotate::Status(s) => format!("status {}", s.name()),
                Annotate::Confidence(Some(c)) => format!("confidence {c}"),
                Annotate::Confidence(None) => "confidence".to_string(),
                Annotate::Resolve(i) => format!("resolve {i}"),
            },
            Command::Evidence(EvidenceKind::Prompt) => "evidence prompt".to_string(),
            Command::Evidence(EvidenceKind::Ablation) => "evidence ablation".to_string(),
            Command::Accept => "accept".to_string(),
            Command::Keep(name) => opt("keep", name),
            Command::Recall(which) => format!("recall {which}"),
            Command::Export(file) => opt("export", file),
            Command::Notes(filter) => format!("notes {filter}"),
            Command::Pairs(Some(n)) => format!("pairs {n}"),
            Command::Pairs(None) => "pairs".to_string(),
            Command::Summary(Some(text)) if text.is_empty() => "summary!".to_string(),
            Command::Summary(text) => opt("summary", &text.as_deref().map(escape)),
            Command::Supernode(name) => format!("supernode {}", escape(name)),
            Command::Unpin => "unpin".to_string(),
            Command::Bridge(on) => format!("bridge {}", if *on { "on" } else { "off" }),
        };
        f.write_str(s.trim_end())
    }
}

/// Runs a `:` command line; a line that does not parse says why on the status bar.
pub fn run(app: &mut App, line: &str) {
    let shape = (app.circuit.n_layer, app.circuit.d_head);
    match Command::parse_for(line, Some(shape)) {
        Ok(cmd) => execute(app, cmd),
        Err(CommandError::Empty) => {}
        Err(e) => app.status = e.to_string(),
    }
}

/// Runs one parsed command.
pub fn execute(app: &mut App, cmd: Command) {
    match cmd {
        Command::SaveQuit => {
            app.save_command();
            app.quit = true;
        }
        Command::Quit => app.quit = true,
        Command::Help => app.help = true,
        Command::Goto(n) if app.circuit.position(&n).is_some() => app.jump(n),
        // A feature of the SAE opened beside the model (`open --sae`): shown in the inspector.
        Command::Goto(n) if n.is_feature() => match n.check_feature(app.sae) {
            Ok(()) => {
                app.jump(n);
                app.set_screen(Screen::Inspector);
                app.watch_features();
            }
            Err(e) => app.status = e.to_string(),
        },
        Command::Goto(n) => app.status = format!("{n} is not in this circuit"),
        Command::Ablate { node, kind } => match node.or(app.selected) {
            Some(n) if app.circuit.position(&n).is_some() => app.toggle_ablation(n, kind),
            Some(n) if n.is_feature() => match n.check_feature(app.sae) {
                Ok(()) => app.toggle_ablation(n, kind),
                Err(e) => app.status = e.to_string(),
            },
            Some(n) => app.status = format!("{n} is not in this circuit"),
            None => app.status = "no node selected".into(),
        },
        Command::Clear => app.clear_ablations(),
        Command::Task(None) => {
            app.status = match crate::workbench::task_description(&app.task) {
                Some((description, targets)) => format!(
                    "task {}: {description} · targets {}",
                    app.task,
                    targets
                        .iter()
                        .map(|x| format!("{x:?}"))
                        .collect::<Vec<_>>()
                        .join(" vs ")
                ),
                None => format!("task {} (not a built-in task: no description or targets)", app.task),
            }
        }
        Command::Task(Some(name)) => {
            let path = app
                .circuit
                .path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(format!("{name}.json"));
            if path.is_file() {
                app.switch_task = Some(name);
                app.quit = true;
            } else if crate::workbench::task_description(&name).is_none() {
                app.status = format!(
                    "unknown task `{name}`; the tasks are: {}",
                    crate::workbench::task_names().join(", ")
                );
            } else {
                app.status = format!(
                    "no circuit for task {name} at {}; make one with `circuitscope prune --task {name}`",
                    path.display()
                );
            }
        }
        Command::Threshold(t) => app.set_threshold(t),
        Command::Pin => app.pin_baseline(),
        Command::Truncate => app.toggle_truncate(),
        Command::Sweep { fragment, max } => {
            if let Some(f) = fragment {
                app.lab.sweep_fragment = f;
            }
            if let Some(n) = max {
                app.lab.sweep_max = n;
            }
            app.request_sweep();
        }
        Command::Annotate(a) => app.annotate(a),
        Command::Evidence(EvidenceKind::Prompt) => app.attach_prompt_evidence(),
        Command::Evidence(EvidenceKind::Ablation) => app.attach_ablation_evidence(),
        Command::Accept => app.accept_explanation(),
        Command::Keep(name) => app.keep_prompt(name.as_deref().unwrap_or("")),
        Command::Recall(which) => app.recall_prompt(&which),
        Command::Save => app.save_command(),
        Command::Export(file) => app.export_command(file.as_deref().unwrap_or("")),
        Command::Notes(filter) => {
            app.notes.filter = filter;
            app.notes.sel = 0;
            app.set_screen(Screen::Notes);
        }
        Command::Pairs(n) => super::screens::pairs::request(app, n.unwrap_or(super::screens::pairs::DEFAULT_PAIRS)),
        Command::Summary(text) => app.set_summary(text),
        Command::Supernode(name) => super::screens::attribution::group(app, &name),
        Command::Unpin => super::screens::attribution::clear_pins(app),
        Command::Bridge(on) => app.set_bridge(on),
    }
}

/// (command, what it does): the `:` part of the help overlay and of the README.
pub const HELP: &[(&str, &str)] = &[
    (":goto ID", "jump to a node, e.g. :goto 0.attn.q[37]"),
    (
        ":ablate [ID] [zero|mean]",
        "toggle an ablation (default: the selected node, zero)",
    ),
    (":clear", "remove all ablations"),
    (":pin", "pin the current run as the baseline"),
    (
        ":bridge on|off",
        "a bridged model: the lab's ablations also steer the dense model through the bridges (its next tokens and logit diff before → after)",
    ),
    (
        ":truncate",
        "toggle keeping the last block_size tokens of a prompt longer than the context",
    ),
    (
        ":sweep \"FRAGMENT\" [N]",
        "repeat FRAGMENT 0..N times at the editor cursor (quotes optional; \\n newline, \\\" quote, \\\\ backslash)",
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
        ":accept",
        "take the selected node's automatic explanation (`circuitscope explain`) as its label, its score as evidence",
    ),
    (
        ":resolve N",
        "settle a label conflict (from session merge) with candidate N",
    ),
    (":notes [FILTER]", "the notes view, filtered"),
    (
        ":pairs [N]",
        "run N task pairs (default 16): every node at the decision token, A, B and B − A, with the heads' attention",
    ),
    (
        ":keep [NAME] / :recall NAME|N",
        "keep the prompt in the session / bring a kept one back",
    ),
    (
        ":task [NAME]",
        "show the task's description and targets, or reopen on the circuit of task NAME (the file beside this one; an unknown name lists the tasks)",
    ),
    (
        ":save / :w",
        "save the session now (it is also saved whenever input pauses)",
    ),
    (
        ":summary [TEXT] / :summary!",
        "set the session's summary, the report's Mechanism (\\n for a new line); alone: edit the current one; !: clear it",
    ),
    (
        ":export [FILE]",
        "write the markdown report (default: the session's path with .md)",
    ),
    (
        ":supernode NAME / :unpin",
        "group the Attribution screen's pinned nodes into supernode NAME / clear every pin and supernode",
    ),
    (":wq / :x", "save and quit"),
    (":q / :quit", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, CommandError> {
        s.parse()
    }

    fn node(s: &str) -> NodeId {
        s.parse().expect("a valid node id")
    }

    #[test]
    fn node_ids_may_be_spelled_the_transformer_lens_way() {
        let shape = Some((2, 16));
        let n = node("1.attn.q[37]");
        assert_eq!(
            Command::parse_for("goto blocks.1.attn.hook_q[2:5]", shape),
            Ok(Command::Goto(n))
        );
        assert_eq!(
            Command::parse_for("g blocks.1.attn.hook_q[37]", shape),
            Ok(Command::Goto(n))
        );
        assert_eq!(
            Command::parse_for("ablate blocks.1.hook_resid_post[4] mean", shape),
            Ok(Command::Ablate {
                node: Some(NodeId::final_resid(4)),
                kind: AblationKind::Mean,
            })
        );
        assert!(matches!(
            Command::parse_for("goto blocks.1.hook_resid_pre[4]", shape),
            Err(CommandError::Node(_))
        ));
        // Without the model's shape, only our spelling is read.
        assert!(parse("goto blocks.1.attn.hook_q[2:5]").is_err());
    }

    #[test]
    fn parses_each_command_and_its_aliases() {
        let n = node("1.attn.q[62]");
        let cases: Vec<(&str, Command)> = vec![
            ("q", Command::Quit),
            ("quit", Command::Quit),
            ("q!", Command::Quit),
            ("wq", Command::SaveQuit),
            ("x", Command::SaveQuit),
            ("w", Command::Save),
            ("save", Command::Save),
            ("help", Command::Help),
            ("goto 1.attn.q[62]", Command::Goto(n)),
            ("  g   1.attn.q[62]  ", Command::Goto(n)),
            (
                "ablate",
                Command::Ablate {
                    node: None,
                    kind: AblationKind::Zero,
                },
            ),
            (
                "ablate mean",
                Command::Ablate {
                    node: None,
                    kind: AblationKind::Mean,
                },
            ),
            (
                "ablate 1.attn.q[62] mean",
                Command::Ablate {
                    node: Some(n),
                    kind: AblationKind::Mean,
                },
            ),
            ("clear", Command::Clear),
            ("task", Command::Task(None)),
            ("task with_as", Command::Task(Some("with_as".into()))),
            ("threshold 0.25", Command::Threshold(0.25)),
            ("t 1", Command::Threshold(1.0)),
            ("pin", Command::Pin),
            (
                "sweep",
                Command::Sweep {
                    fragment: None,
                    max: None,
                },
            ),
            (
                "sweep , 0 12",
                Command::Sweep {
                    fragment: Some(", 0".into()),
                    max: Some(12),
                },
            ),
            (
                "sweep [\\n",
                Command::Sweep {
                    fragment: Some("[\n".into()),
                    max: None,
                },
            ),
            ("label  a  b ", Command::Annotate(Annotate::Label("a  b".into()))),
            ("note x\\ny", Command::Annotate(Annotate::Note("x\ny".into()))),
            (
                "tag depth, , attention ",
                Command::Annotate(Annotate::Tags(vec!["depth".into(), "attention".into()])),
            ),
            ("status s", Command::Annotate(Annotate::Status(Status::Supported))),
            ("confidence 0.8", Command::Annotate(Annotate::Confidence(Some(0.8)))),
            ("conf", Command::Annotate(Annotate::Confidence(None))),
            ("resolve 2", Command::Annotate(Annotate::Resolve(2))),
            ("evidence", Command::Evidence(EvidenceKind::Prompt)),
            ("evidence ablation", Command::Evidence(EvidenceKind::Ablation)),
            ("keep", Command::Keep(None)),
            ("keep deep one", Command::Keep(Some("deep one".into()))),
            ("recall 2", Command::Recall("2".into())),
            ("export", Command::Export(None)),
            ("export out/r.md", Command::Export(Some("out/r.md".into()))),
            ("notes depth", Command::Notes("depth".into())),
            ("filter", Command::Notes(String::new())),
            ("pairs", Command::Pairs(None)),
            ("pairs 32", Command::Pairs(Some(32))),
            ("bridge on", Command::Bridge(true)),
            ("bridge  off ", Command::Bridge(false)),
            ("summary", Command::Summary(None)),
            ("summary!", Command::Summary(Some(String::new()))),
            (
                "summary Depth counter.\\nThen a readout.",
                Command::Summary(Some("Depth counter.\nThen a readout.".into())),
            ),
            // Quoted fragments: the quotes delimit, escapes work inside, and a number can be the fragment.
            (
                "sweep \", 7\" 30",
                Command::Sweep {
                    fragment: Some(", 7".into()),
                    max: Some(30),
                },
            ),
            (
                "sweep \" \\\"x\\\" \"",
                Command::Sweep {
                    fragment: Some(" \"x\" ".into()),
                    max: None,
                },
            ),
            (
                "sweep \"7\"",
                Command::Sweep {
                    fragment: Some("7".into()),
                    max: None,
                },
            ),
            (
                "sweep 12",
                Command::Sweep {
                    fragment: None,
                    max: Some(12),
                },
            ),
            // A literal backslash-n in a note is written `\\n`.
            ("note a\\\\nb", Command::Annotate(Annotate::Note("a\\nb".into()))),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).as_ref(), Ok(&want), "{line:?}");
        }
    }

    #[test]
    fn what_parses_writes_back_to_the_same_command() {
        for line in [
            "q",
            "wq",
            "save",
            "help",
            "goto 0.mlp.post_act[985]",
            "g final_resid[3]",
            "ablate",
            "ablate mean",
            "ablate 2.attn.v[44]",
            "ablate 2.attn.v[44] mean",
            "clear",
            "task",
            "task bracket_counting",
            "threshold 0.1",
            "t 0.3333333333333333",
            "pin",
            "sweep",
            "sweep , 0",
            "sweep [\\n\\t 7",
            "label a | `b`",
            "label",
            "note one\\ntwo\\\\n",
            "tags a, b c",
            "tags",
            "status refuted",
            "confidence 0.125",
            "confidence",
            "resolve 1",
            "evidence",
            "evidence ablation",
            "keep",
            "keep name with spaces",
            "recall 1",
            "export",
            "export r.md",
            "notes",
            "notes conflict",
            "pairs",
            "pairs 8",
            "bridge on",
            "bridge off",
            "summary",
            "summary two\\nlines \\\\n",
            "sweep \", 7\" 30",
            "sweep \"say \\\"hi\\\"\" 3",
            "sweep 12",
        ] {
            let cmd = parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let written = cmd.to_string();
            assert_eq!(parse(&written), Ok(cmd.clone()), "{line:?} → {written:?}");
            // And the written form is a fixed point.
            assert_eq!(parse(&written).map(|c| c.to_string()), Ok(written));
        }
    }

    #[test]
    fn escapes_round_trip_and_a_literal_backslash_n_can_be_typed() {
        for text in [
            "a\nb",
            "a\\nb",
            "tab\there",
            "\\",
            "ends with \\",
            "quote \" inside",
            "",
        ] {
            assert_eq!(unescape(&escape(text)), text, "{text:?}");
        }
        assert_eq!(unescape("a\\nb"), "a\nb");
        assert_eq!(unescape("a\\\\nb"), "a\\nb");
        assert_eq!(unescape("\\x stays"), "\\x stays");
    }

    #[test]
    fn bad_lines_are_errors_that_say_why() {
        assert_eq!(parse(""), Err(CommandError::Empty));
        assert_eq!(parse("   "), Err(CommandError::Empty));
        assert_eq!(parse("frobnicate 3"), Err(CommandError::Unknown("frobnicate".into())));
        assert!(matches!(parse("goto 9.nope[1]"), Err(CommandError::Node(_))));
        assert!(matches!(parse("goto"), Err(CommandError::Node(_))));
        assert!(matches!(parse("ablate junk"), Err(CommandError::Node(_))));
        assert_eq!(
            parse("ablate 1.attn.q[62] half"),
            Err(CommandError::AblationKind("half".into()))
        );
        for t in ["threshold", "threshold 1.5", "threshold -0.1", "t NaN", "t x"] {
            assert_eq!(parse(t), Err(CommandError::Threshold), "{t}");
        }
        assert_eq!(parse("status maybe"), Err(CommandError::Status));
        for c in ["confidence 2", "conf -1", "conf high"] {
            assert_eq!(parse(c), Err(CommandError::Confidence), "{c}");
        }
        assert_eq!(parse("resolve"), Err(CommandError::Resolve));
        assert_eq!(parse("resolve first"), Err(CommandError::Resolve));
        assert_eq!(parse("evidence logits"), Err(CommandError::Evidence));
        for p in ["pairs 0", "pairs many", "pairs 100000", "pairs -3"] {
            assert_eq!(parse(p), Err(CommandError::Pairs), "{p}");
        }
        for b in ["bridge", "bridge yes", "bridge on off"] {
            assert_eq!(parse(b), Err(CommandError::Bridge), "{b}");
        }
        assert_eq!(parse("sweep \", 7 30"), Err(CommandError::Unclosed));
        assert_eq!(parse("sweep \", 7\" x"), Err(CommandError::SweepCount("x".into())));
        assert_eq!(parse("sweep \"\" 3"), Err(CommandError::EmptyFragment));
        // The messages the status bar shows.
        assert_eq!(
            parse("frobnicate").unwrap_err().to_string(),
            "unknown command `frobnicate` (? lists them)"
        );
        assert!(parse("goto x").unwrap_err().to_string().contains("invalid node id `x`"));
    }
}
