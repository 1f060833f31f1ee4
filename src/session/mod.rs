//! Sessions: everything an analyst does to a circuit (annotations with their evidence, saved and pinned prompts,
//! ablations, cursor, marks), kept in one JSON file per model and task in `sessions/`.
//!
//! The file is diff- and merge-friendly: serde's pretty printer puts one field per line, struct fields keep
//! their declared order and every map is a `BTreeMap`, so the same session always serialises to the same bytes.
//! [`store`] writes it crash-safely and locks it against a second writer; [`merge`] combines two analysts' files.

pub mod merge;
pub mod store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::circuit::NodeId;

pub use merge::merge;
pub use store::{now_rfc3339, OpenedSession, SessionLock};

/// The newest session format this build reads and writes.
pub const SESSION_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid session file: {msg}; left untouched")]
    Corrupt { path: String, msg: String },
    #[error(
        "{path} is session format version {found}, newer than this build reads ({supported}); upgrade circuitscope"
    )]
    NewerVersion { path: String, found: u64, supported: u32 },
    #[error("{path} was made for model {made_for}, not this model ({given}): opened read-only")]
    OtherModel {
        path: String,
        made_for: String,
        given: String,
    },
    #[error("{path} is in use by process {pid} (lock file {lock}); opened read-only")]
    Locked { path: String, pid: u32, lock: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, SessionError>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Hypothesis,
    Supported,
    Refuted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Hypothesis => "hypothesis",
            Status::Supported => "supported",
            Status::Refuted => "refuted",
        }
    }

    pub fn next(self) -> Status {
        match self {
            Status::Hypothesis => Status::Supported,
            Status::Supported => Status::Refuted,
            Status::Refuted => Status::Hypothesis,
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_lowercase().as_str() {
            "hypothesis" | "h" => Some(Status::Hypothesis),
            "supported" | "s" => Some(Status::Supported),
            "refuted" | "r" => Some(Status::Refuted),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AblationMode {
    Zero,
    Mean,
}

impl AblationMode {
    pub fn name(self) -> &'static str {
        match self {
            AblationMode::Zero => "zero",
            AblationMode::Mean => "mean",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AblationSpec {
    pub node: NodeId,
    pub mode: AblationMode,
}

/// One piece of evidence attached to a node's annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Evidence {
    /// A prompt and what the model did on it: the nodes' values at one token, the logit difference.
    Prompt {
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
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// An ablation and its measured effect.
    Ablation {
        ablations: Vec<AblationSpec>,
        /// The prompt the logit differences were measured on ("" when measured on the task pairs only).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logit_diff_before: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logit_diff_after: Option<f32>,
        /// Task loss (raw scale, as in circuit files) before and after, when measured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_before: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_after: Option<f64>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
}

/// A label another session gave the node, kept by [`merge`] until the analyst resolves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelCandidate {
    pub label: String,
    /// Where it came from (the merged file's name).
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub status: Status,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Non-empty: the labels disagree (every candidate, this file's first); `label` is the first until resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict: Vec<LabelCandidate>,
}

impl Annotation {
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
            && self.notes.is_empty()
            && self.tags.is_empty()
            && self.status == Status::Hypothesis
            && self.confidence.is_none()
            && self.evidence.is_empty()
            && self.conflict.is_empty()
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPrompt {
    #[serde(default)]
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionModel {
    /// The model fingerprint of the weights (as in circuit files).
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The model directory, as opened (for `export` to find the scan and tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitRef {
    /// The circuit file, as opened.
    pub path: String,
    pub task: String,
    #[serde(default)]
    pub nodes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub format_version: u32,
    pub model: SessionModel,
    pub circuit: CircuitRef,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub modified: String,
    /// The selected node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<NodeId>,
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
    #[serde(default)]
    pub saved_prompts: Vec<SavedPrompt>,
    #[serde(default)]
    pub annotations: BTreeMap<NodeId, Annotation>,
    /// The mechanism, written up for the whole circuit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

impl Session {
    pub fn new(model: SessionModel, circuit: CircuitRef) -> Session {
        let now = now_rfc3339();
        Session {
            format_version: SESSION_FORMAT_VERSION,
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
        }
    }

    /// The canonical bytes: pretty JSON and a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a session always serialises");
        s.push('\n');
        s
    }

    /// Parses a session, refusing newer format versions (checked first, so that a newer file with fields we do
    /// not know says "newer", not "corrupt").
    pub fn from_json(text: &str, path: &str) -> Result<Session> {
        let corrupt = |msg: String| SessionError::Corrupt {
            path: path.to_string(),
            msg,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(format!("not JSON ({e})")))?;
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| corrupt("no format_version".into()))?;
        if version > SESSION_FORMAT_VERSION as u64 {
            return Err(SessionError::NewerVersion {
                path: path.to_string(),
                found: version,
                supported: SESSION_FORMAT_VERSION,
            });
        }
        let session: Session = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        session.check_values().map_err(corrupt)?;
        Ok(session)
    }

    /// Values the UI would never write but a hand-edited or hostile file can hold; refused on every read so that
    /// `export` and `merge` do not pass them on.
    fn check_values(&self) -> std::result::Result<(), String> {
        for (node, a) in &self.annotations {
            if let Some(c) = a.confidence {
                if !(0.0..=1.0).contains(&c) {
                    return Err(format!("annotation on {node}: confidence {c} is outside 0..=1"));
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
