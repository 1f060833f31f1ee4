//! Sessions: everything an analyst does to a circuit (annotations with their evidence, saved and pinned prompts,
//! ablations, cursor, marks), kept in one JSON file per model and task in `sessions/`.
//!
//! The file is diff- and merge-friendly: serde's pretty printer puts one field per line, struct fields keep
//! their declared order and every map is a `BTreeMap`, so the same session always serialises to the same bytes.
//! [`store`] writes it crash-safely and locks it against a second writer; [`merge`](mod@merge) combines two analysts' files.

pub mod merge;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::circuit::NodeId;

pub use merge::merge;
pub use store::{now_rfc3339, OpenedSession, SessionLock};

/// The newest session format this build reads and writes. Version 2 added the `explanation` evidence kind and
/// the Attribution screen's pins; a session is written as version 2 only when it uses one of them (see
/// [`Session::required_version`]), so that builds that read only version 1 open every file they can understand,
/// and refuse the others as "newer" instead of calling them corrupt or (pins) dropping what they do not know on
/// their next save.
pub const SESSION_FORMAT_VERSION: u32 = 2;

/// The version written for a session that uses nothing newer than the first format.
pub const SESSION_FORMAT_BASE_VERSION: u32 = 1;

/// Why a session could not be read or written; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The session file, as displayed.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid session json or holds impossible values; it is not overwritten.
    #[error("{path} is not a valid session file: {reason}; left untouched")]
    Corrupt {
        /// The session file, as displayed.
        path: String,
        /// What is wrong with it.
        reason: CorruptSession,
    },
    /// The file was written by a newer build.
    #[error(
        "{path} is session format version {found}, newer than this build reads ({supported}); upgrade circuitscope"
    )]
    NewerVersion {
        /// The session file, as displayed.
        path: String,
        /// The `format_version` in the file.
        found: u64,
        /// The newest version this build reads ([`SESSION_FORMAT_VERSION`]).
        supported: u32,
    },
    /// The session belongs to another model's weights; it opens read-only.
    #[error("{path} was made for model {made_for}, not this model ({given}): opened read-only")]
    OtherModel {
        /// The session file, as displayed.
        path: String,
        /// The fingerprint recorded in the session.
        made_for: String,
        /// The fingerprint of the model opened.
        given: String,
    },
    /// Another process holds the session's lock; it opens read-only.
    #[error("{path} is in use by process {pid} (lock file {lock}); opened read-only")]
    Locked {
        /// The session file, as displayed.
        path: String,
        /// The process id in the lock file.
        pid: u32,
        /// The lock file, as displayed.
        lock: String,
    },
    /// A file holds a value the UI never writes (hand-edited or hostile); it is not overwritten.
    #[error("{path} is not a valid session file: {reason}; left untouched")]
    BadValue {
        /// The session file, as displayed.
        path: String,
        /// The value and why it is refused.
        reason: ValueError,
    },
    /// Two sessions of different models cannot be merged.
    #[error(
        "{a} and {b} are sessions of different models ({a_fingerprint} vs {b_fingerprint}); merge only sessions of one model"
    )]
    DifferentModels {
        /// The first session, as named by the caller.
        a: String,
        /// The second session, as named by the caller.
        b: String,
        /// The model fingerprint the first records.
        a_fingerprint: String,
        /// The model fingerprint the second records.
        b_fingerprint: String,
    },
}

/// Why a session file does not parse (the `reason` of [`SessionError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum CorruptSession {
    /// The file is not JSON.
    #[error("not JSON ({0})")]
    NotJson(serde_json::Error),
    /// The file has no numeric `format_version`.
    #[error("no format_version")]
    NoVersion,
    /// The file is JSON but not a session's; serde_json's message names the field, so it is kept as is.
    #[error("{0}")]
    Schema(serde_json::Error),
}

/// A value in a session file that the UI never writes.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// An annotation's confidence is not a probability.
    #[error("annotation on {node}: confidence {confidence} is outside 0..=1")]
    Confidence {
        /// The annotated node.
        node: NodeId,
        /// The confidence in the file.
        confidence: f32,
    },
}

/// Result of session operations.
pub type Result<T> = std::result::Result<T, SessionError>;

/// How far an annotation's hypothesis has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Proposed, not yet tested (the default).
    #[default]
    Hypothesis,
    /// Backed by evidence.
    Supported,
    /// Contradicted by evidence.
    Refuted,
}

impl Status {
    /// The lowercase name used in files and commands.
    pub fn name(self) -> &'static str {
        match self {
            Status::Hypothesis => "hypothesis",
            Status::Supported => "supported",
            Status::Refuted => "refuted",
        }
    }

    /// The status after this one in the cycle hypothesis → supported → refuted → hypothesis (the TUI's toggle).
    pub fn next(self) -> Status {
        match self {
            Status::Hypothesis => Status::Supported,
            Status::Supported => Status::Refuted,
            Status::Refuted => Status::Hypothesis,
        }
    }

    /// Parses a name or its first letter, case-insensitively (`"s"`, `"Supported"`).
    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_lowercase().as_str() {
            "hypothesis" | "h" => Some(Status::Hypothesis),
            "supported" | "s" => Some(Status::Supported),
            "refuted" | "r" => Some(Status::Refuted),
            _ => None,
        }
    }
}

/// How an ablated node's value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AblationMode {
    /// Set to zero.
    Zero,
    /// Set to the node's mean over the pretraining scan.
    Mean,
}

impl AblationMode {
    /// The lowercase name used in files and commands.
    pub fn name(self) -> &'static str {
        match self {
            AblationMode::Zero => "zero",
            AblationMode::Mean => "mean",
        }
    }
}

/// One node ablated in one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AblationSpec {
    /// The node ablated.
    pub node: NodeId,
    /// What its value is replaced with.
    pub mode: AblationMode,
}

/// One piece of evidence attached to a node's annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Evidence {
    /// A prompt and what the model did on it: the nodes' values at one token, the logit difference.
    Prompt {
        /// The prompt text as typed.
        prompt: String,
        /// The tokens as displayed, so a report needs no tokenizer.
        tokens: Vec<String>,
        /// The token the magnitudes were read at.
        position: usize,
        /// Node → value at `position` (the annotated node first of all; others for context).
        magnitudes: BTreeMap<NodeId, f32>,
        /// Logit of the task's target A minus target B at the last token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logit_diff: Option<f32>,
        /// Ablations active during the run.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ablations: Vec<AblationSpec>,
        /// The analyst's comment.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// An ablation and its measured effect.
    Ablation {
        /// The nodes ablated together.
        ablations: Vec<AblationSpec>,
        /// The prompt the logit differences were measured on ("" when measured on the task pairs only).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prompt: String,
        /// Logit difference (target A minus target B) without the ablations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logit_diff_before: Option<f32>,
        /// Logit difference with the ablations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logit_diff_after: Option<f32>,
        /// Task loss (raw scale, as in circuit files) before and after, when measured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_before: Option<f64>,
        /// Task loss with the ablations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_after: Option<f64>,
        /// The analyst's comment.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// An automatic explanation (`circuitscope explain`, N2G) taken as the label with `:accept`, and its score
    /// on held-out text.
    Explanation {
        /// The explanation, e.g. `fires on "[[" after "= "`.
        text: String,
        /// Correlation of the activations it predicts with the real ones.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation: Option<f32>,
        /// Of the tokens it predicts to fire, the share that does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        precision: Option<f32>,
        /// Of the tokens that fire, the share it predicts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recall: Option<f32>,
    },
}

/// A label another session gave the node, kept by [`merge`](mod@merge) until the analyst resolves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelCandidate {
    /// The other session's label.
    pub label: String,
    /// Where it came from (the merged file's name).
    pub source: String,
}

/// What the analyst knows about one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Short name of what the node means (e.g. "open bracket count").
    #[serde(default)]
    pub label: String,
    /// Free-form notes.
    #[serde(default)]
    pub notes: String,
    /// Tags for grouping and filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How far the hypothesis has got.
    #[serde(default)]
    pub status: Status,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Prompts and ablations that bear on the hypothesis, oldest first.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Non-empty: the labels disagree (every candidate, this file's first); `label` is the first until resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict: Vec<LabelCandidate>,
}

impl Annotation {
    /// Whether nothing at all is recorded (such annotations are not written).
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
            && self.notes.is_empty()
            && self.tags.is_empty()
            && self.status == Status::Hypothesis
            && self.confidence.is_none()
            && self.evidence.is_empty()
            && self.conflict.is_empty()
    }

    /// Whether the label is an automatic explanation taken unchanged with `:accept` (the export marks it).
    pub fn label_is_automatic(&self) -> bool {
        !self.label.is_empty()
            && self
                .evidence
                .iter()
                .any(|e| matches!(e, Evidence::Explanation { text, .. } if *text == self.label))
    }

    /// Resolves a label conflict by choosing candidate `i`.
    pub fn resolve(&mut self, i: usize) -> bool {
        match self.conflict.get(i) {
            Some(c) => {
                self.label = c.label.clone();
                self.conflict.clear();
                true
            }
            None => false,
        }
    }
}

/// A prompt the analyst kept for later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPrompt {
    /// A short name; may be empty.
    #[serde(default)]
    pub name: String,
    /// The prompt text.
    pub text: String,
    /// Logit of the task's target A minus target B at the last token when it was kept (None: not measured,
    /// e.g. the targets are not single tokens, or the session predates the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_diff: Option<f32>,
    /// The ablations that logit difference was measured under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ablations: Vec<AblationSpec>,
}

/// A supernode: pinned attribution-graph nodes grouped under a name (Neuronpedia's `qParams.supernodes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Supernode {
    /// The name the analyst gave it (unique within the session, not empty).
    pub name: String,
    /// Its nodes' graph ids (`1.mlp.post_act[98]@12`, `embed@3`).
    pub nodes: Vec<String>,
}

/// An edge between two pinned or grouped nodes, as the last graph computed on the pins' prompt had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedEdge {
    /// The source node's graph id.
    pub source: String,
    /// The target node's graph id.
    pub target: String,
    /// The source's direct contribution to the target's input.
    pub weight: f32,
}

/// The Attribution screen's pins: nodes of the attribution graph of one prompt, supernodes, and the edges among
/// them; the markdown report draws them as a mermaid subgraph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributionPins {
    /// The prompt whose graph the node ids (positions included) refer to.
    #[serde(default)]
    pub prompt: String,
    /// Pinned nodes, in pinning order.
    #[serde(default)]
    pub pinned: Vec<String>,
    /// Supernodes, in the order they were made.
    #[serde(default)]
    pub supernodes: Vec<Supernode>,
    /// Edges among the pinned and grouped nodes.
    #[serde(default)]
    pub edges: Vec<PinnedEdge>,
}

impl AttributionPins {
    /// Whether nothing is pinned or grouped (then the session file leaves the field out).
    pub fn is_empty(&self) -> bool {
        self.pinned.is_empty() && self.supernodes.is_empty()
    }
}

/// Which model a session was made for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionModel {
    /// The model fingerprint of the weights (as in circuit files).
    pub fingerprint: String,
    /// A display name for the model, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The model directory, as opened (for `export` to find the scan and tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Which circuit a session annotates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitRef {
    /// The circuit file, as opened.
    pub path: String,
    /// The circuit's task name.
    pub task: String,
    /// Number of nodes in the circuit when the session was made.
    #[serde(default)]
    pub nodes: usize,
}

/// One analyst's work on one circuit of one model: the session file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The format this was read in ([`SESSION_FORMAT_BASE_VERSION`] for a new session); [`Session::to_json`]
    /// raises it when the session uses something newer.
    pub format_version: u32,
    /// The model the session was made for.
    pub model: SessionModel,
    /// The circuit it annotates.
    pub circuit: CircuitRef,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub created: String,
    /// RFC 3339, UTC; updated on every save.
    #[serde(default)]
    pub modified: String,
    /// The selected node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<NodeId>,
    /// Nodes the analyst marked, in marking order.
    #[serde(default)]
    pub marks: Vec<NodeId>,
    /// The lab's prompt.
    #[serde(default)]
    pub prompt: String,
    /// The lab's pinned baseline prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_prompt: Option<String>,
    /// Ablations active in the lab.
    #[serde(default)]
    pub ablations: Vec<AblationSpec>,
    /// Prompts kept for later.
    #[serde(default)]
    pub saved_prompts: Vec<SavedPrompt>,
    /// Annotations by node; nodes without any are absent.
    #[serde(default)]
    pub annotations: BTreeMap<NodeId, Annotation>,
    /// The mechanism, written up for the whole circuit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    /// The Attribution screen's pinned nodes and supernodes (absent in sessions without any, and in older ones).
    #[serde(default, skip_serializing_if = "AttributionPins::is_empty")]
    pub attribution: AttributionPins,
}

impl Session {
    /// An empty session for `model` and `circuit`, created and modified now.
    pub fn new(model: SessionModel, circuit: CircuitRef) -> Session {
        let now = now_rfc3339();
        Session {
            format_version: SESSION_FORMAT_BASE_VERSION,
            model,
            circuit,
            created: now.clone(),
            modified: now,
            cursor: None,
            marks: Vec::new(),
            prompt: String::new(),
            pinned_prompt: None,
            ablations: Vec::new(),
            saved_prompts: Vec::new(),
            annotations: BTreeMap::new(),
            summary: String::new(),
            attribution: AttributionPins::default(),
        }
    }

    /// The oldest format that can hold this session: [`SESSION_FORMAT_VERSION`] when an annotation carries an
    /// `explanation` evidence or the Attribution screen has pins, else [`SESSION_FORMAT_BASE_VERSION`].
    pub fn required_version(&self) -> u32 {
        let newer = !self.attribution.is_empty()
            || self
                .annotations
                .values()
                .flat_map(|a| &a.evidence)
                .any(|e| matches!(e, Evidence::Explanation { .. }));
        if newer {
            SESSION_FORMAT_VERSION
        } else {
            SESSION_FORMAT_BASE_VERSION
        }
    }

    /// The canonical bytes: pretty JSON and a final newline, with `format_version` raised to
    /// [`required_version`](Self::required_version) when the session now uses something newer than the version it
    /// was read or made as (never lowered: a file stays as readable as it was).
    pub fn to_json(&self) -> String {
        let version = self.required_version().max(self.format_version);
        let mut s = if version == self.format_version {
            serde_json::to_string_pretty(self)
        } else {
            serde_json::to_string_pretty(&Session {
                format_version: version,
                ..self.clone()
            })
        }
        .expect("a session always serialises");
        s.push('\n');
        s
    }

    /// Parses a session, refusing newer format versions (checked first, so that a newer file with fields we do
    /// not know says "newer", not "corrupt").
    pub fn from_json(text: &str, path: &str) -> Result<Session> {
        let corrupt = |reason: CorruptSession| SessionError::Corrupt {
            path: path.to_string(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(CorruptSession::NotJson(e)))?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt(CorruptSession::NoVersion))?;
        if version > SESSION_FORMAT_VERSION as u64 {
            return Err(SessionError::NewerVersion {
                path: path.to_string(),
                found: version,
                supported: SESSION_FORMAT_VERSION,
            });
        }
        let session: Session = serde_json::from_value(value).map_err(|e| corrupt(CorruptSession::Schema(e)))?;
        session.check_values().map_err(|reason| SessionError::BadValue {
            path: path.to_string(),
            reason,
        })?;
        Ok(session)
    }

    /// Values the UI would never write but a hand-edited or hostile file can hold; refused on every read so that
    /// `export` and `merge` do not pass them on.
    fn check_values(&self) -> std::result::Result<(), ValueError> {
        for (node, a) in &self.annotations {
            if let Some(confidence) = a.confidence {
                if !(0.0..=1.0).contains(&confidence) {
                    return Err(ValueError::Confidence {
                        node: *node,
                        confidence,
                    });
                }
            }
        }
        Ok(())
    }

    /// Annotations on nodes that `known` does not contain (a session of another circuit, or an edited file).
    pub fn unknown_nodes(&self, known: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.annotations.keys().filter(|n| !known(n)).copied().collect();
        v.extend(self.marks.iter().filter(|n| !known(n)).copied());
        v.extend(self.cursor.iter().filter(|n| !known(n)).copied());
        v.extend(self.ablations.iter().map(|a| a.node).filter(|n| !known(n)));
        v.sort();
        v.dedup();
        v
    }
}
