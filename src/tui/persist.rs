//! The app's session: restoring one into the app, building one from it, saving it (from a dirty flag, on the
//! writer thread of [`writer`]), the annotation commands and "attach evidence".

pub mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use self::writer::{SaveOutcome, SessionWriter};
use super::app::App;
use super::command::Annotate;
use crate::circuit::NodeId;
use crate::session::{self, AblationMode, AblationSpec, Evidence, OpenedSession, SavedPrompt, Session, SessionLock};
use crate::workbench::{Ablation, AblationKind, Request, RunSummary};

/// The session file behind an app.
pub struct SessionState {
    /// The session file (written atomically by the writer thread).
    pub path: PathBuf,
    /// What the app does not hold itself (created, circuit reference, saved prompts, summary), and the model.
    pub base: Session,
    /// Some(reason): this file is never written.
    pub read_only: Option<String>,
    /// None when read-only. Declared before `lock` so that it drops (flushing what is queued) while the lock is
    /// still held.
    pub writer: Option<SessionWriter>,
    /// The lock that keeps a second workbench from writing the same session (None: read-only).
    pub lock: Option<SessionLock>,
    /// Something may have changed since the last snapshot went to the writer.
    pub dirty: bool,
    /// The last write's error, until a write succeeds.
    pub save_error: Option<String>,
}

/// The session file's form of a lab ablation.
pub fn to_spec(a: &Ablation) -> AblationSpec {
    AblationSpec {
        node: a.node,
        mode: match a.kind {
            AblationKind::Zero => AblationMode::Zero,
            AblationKind::Mean => AblationMode::Mean,
        },
    }
}

/// A lab ablation from the session file's form.
pub fn from_spec(a: &AblationSpec) -> Ablation {
    Ablation {
        node: a.node,
        kind: match a.mode {
            AblationMode::Zero => AblationKind::Zero,
            AblationMode::Mean => AblationKind::Mean,
        },
    }
}

impl App {
    /// Restores an opened session into the app (cursor, marks, prompt, pinned prompt, ablations, annotations)
    /// and keeps it for saving. Returns warnings (read-only, nodes not in the circuit).
    pub fn attach_session(&mut self, opened: OpenedSession) -> Vec<String> {
        let OpenedSession {
            path,
            session: s,
            read_only,
            lock,
            existed,
        } = opened;
        let mut warnings = Vec::new();
        // Features of the SAE opened beside the model belong here too, though not to the circuit.
        let sae = self.sae;
        let here = |n: &NodeId| n.is_feature() && n.check_feature(sae).is_ok();
        let known = |n: &NodeId| self.circuit.position(n).is_some() || here(n);
        let unknown = s.unknown_nodes(known);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().take(4).map(|n| n.to_string()).collect();
            warnings.push(format!(
                "{}: {} node(s) not in this circuit ({}{}): their annotations are kept but not shown on the map",
                path.display(),
                unknown.len(),
                list.join(", "),
                if unknown.len() > 4 { ", …" } else { "" }
            ));
        }
        if let Some(r) = &read_only {
            warnings.push(r.clone());
        }
        if existed {
            self.annotations = s.annotations.clone();
            self.marks = s
                .marks
                .iter()
                .copied()
                .filter(|n| self.circuit.position(n).is_some())
                .collect();
            if let Some(c) = s.cursor.filter(|n| self.circuit.position(n).is_some() || here(n)) {
                self.selected = Some(c);
                self.history = vec![c];
                self.hist_pos = 0;
            }
            self.lab.ablations = s
                .ablations
                .iter()
                .filter(|a| self.circuit.position(&a.node).is_some() || here(&a.node))
                .map(from_spec)
                .collect();
            // The runs queued for the default prompt are superseded by the session's.
            self.outbox.retain(|r| !matches!(r, Request::Run { .. }));
            if !s.prompt.is_empty() {
                let mut ta = ratatui_textarea::TextArea::new(s.prompt.split('\n').map(str::to_string).collect());
                ta.move_cursor(ratatui_textarea::CursorMove::Bottom);
                ta.move_cursor(ratatui_textarea::CursorMove::End);
                self.prompt = ta;
            }
            self.lab.baseline = None;
            self.attribution.pins = s.attribution.clone();
            self.lab.pinned_text = s.pinned_prompt.clone();
            if let Some(p) = &s.pinned_prompt {
                self.lab.next_id += 1;
                self.lab.pin_pending = Some(self.lab.next_id);
                self.outbox.push(Request::PinRun {
                    id: self.lab.next_id,
                    text: p.clone(),
                });
            }
            self.request_run();
        }
        self.session = None;
        // For a restored session this is what the file holds; for a new one, what it would hold: either way
        // nothing is written until something changes.
        let on_disk = self.session_snapshot(&s);
        let mut read_only = read_only;
        let writer = match &read_only {
            Some(_) => None,
            None => match SessionWriter::spawn(path.clone(), &on_disk) {
                Ok(w) => Some(w),
                Err(e) => {
                    let why = format!(
                        "{}: cannot start the session writer ({e}); nothing will be saved",
                        path.display()
                    );
                    warnings.push(why.clone());
                    read_only = Some(why);
                    None
                }
            },
        };
        let state = SessionState {
            path: path.clone(),
            base: s,
            read_only,
            writer,
            lock,
            dirty: false,
            save_error: None,
        };
        self.status = match (&state.read_only, existed) {
            (Some(_), _) => format!(
                "session {} is read-only (see the warning); nothing will be saved",
                path.display()
            ),
            (None, true) => format!(
                "session {} restored ({} annotations)",
                path.display(),
                self.annotations.len()
            ),
            (None, false) => format!("new session {} (saved on the first change)", path.display()),
        };
        self.session = Some(state);
        self.watch_features();
        warnings
    }

    /// The session as the app holds it now, on top of `base`.
    fn session_snapshot(&self, base: &Session) -> Session {
        let mut s = base.clone();
        s.cursor = self.selected;
        // The file's order is kept (marks not in this circuit too); new marks follow in the app's order.
        s.marks = base
            .marks
            .iter()
            .copied()
            .filter(|n| self.marks.contains(n) || self.circuit.position(n).is_none())
            .collect();
        s.marks
            .extend(self.marks.iter().copied().filter(|n| !base.marks.contains(n)));
        s.prompt = self.prompt_text();
        s.pinned_prompt = self.lab.pinned_text.clone();
        s.ablations = self.lab.ablations.iter().map(to_spec).collect();
        s.attribution = self.attribution.pins.clone();
        s.annotations = self
            .annotations
            .iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(n, a)| (*n, a.clone()))
            .collect();
        s
    }

    /// The session as it would be saved now (None without a session).
    pub fn to_session(&self) -> Option<Session> {
        self.session.as_ref().map(|st| self.session_snapshot(&st.base))
    }

    /// Hands the session to the writer thread when something may have changed since the last hand-over, and
    /// shows a write error the writer has reported. Never waits for the disk: `update` calls it on ticks (when
    /// input has paused) and when the app quits.
    pub fn autosave(&mut self) {
        let dirty = self.session.as_ref().is_some_and(|st| st.dirty);
        if dirty {
            let snapshot = self.to_session();
            if let (Some(st), Some(s)) = (self.session.as_mut(), snapshot) {
                st.dirty = false;
                if let Some(w) = st.writer.as_mut() {
                    w.send(s, false);
                }
            }
        }
        let err = self
            .session
            .as_mut()
            .and_then(|st| st.writer.as_mut())
            .and_then(SessionWriter::take_new_error);
        if let (Some(e), Some(st)) = (err, self.session.as_mut()) {
            st.save_error = Some(e.clone());
            self.status = e;
        }
    }

    /// Waits until the writer has written everything handed to it (tests; quitting waits the same way when the
    /// app is dropped). Returns the outcome of the last write.
    pub fn wait_for_saves(&mut self) -> Option<SaveOutcome> {
        let outcome = self.session.as_ref()?.writer.as_ref()?.wait_all();
        self.note_outcome(&outcome);
        Some(outcome)
    }

    /// Writes the session now (`force`: even when unchanged) and waits for the disk: the explicit `:save`.
    pub fn save(&mut self, force: bool) -> Option<SaveOutcome> {
        let s = self.to_session()?;
        let st = self.session.as_mut()?;
        st.dirty = false;
        let w = st.writer.as_mut()?;
        let seq = w.send(s, force);
        let outcome = w.wait(seq);
        self.note_outcome(&outcome);
        Some(outcome)
    }

    fn note_outcome(&mut self, outcome: &SaveOutcome) {
        let Some(st) = self.session.as_mut() else { return };
        // Taken here so that `autosave` does not report the same error again.
        let _ = st.writer.as_mut().and_then(SessionWriter::take_new_error);
        match outcome {
            SaveOutcome::Failed(e) => {
                st.save_error = Some(e.clone());
                self.status = e.clone();
            }
            SaveOutcome::Written | SaveOutcome::Unchanged => st.save_error = None,
        }
    }

    /// `:w`: saves now and waits for the write, saying where it went (or why not: no session, read-only).
    pub fn save_command(&mut self) {
        match &self.session {
            None => self.status = "no session (open with --session FILE)".into(),
            Some(st) if st.read_only.is_some() => {
                self.status = format!("read-only session: {}", st.read_only.clone().unwrap_or_default())
            }
            Some(st) => {
                let path = st.path.display().to_string();
                if let Some(SaveOutcome::Written) = self.save(true) {
                    self.status = format!("saved {path}");
                }
            }
        }
    }

    /// `:export [FILE]`: the engine writes the report (it holds the scan and the tokenizer).
    pub fn export_command(&mut self, file: &str) {
        let Some(session) = self.to_session() else {
            self.status = "no session to export (open with --session FILE)".into();
            return;
        };
        let path = if file.is_empty() {
            self.session
                .as_ref()
                .map(|st| st.path.with_extension("md"))
                .unwrap_or_else(|| PathBuf::from("report.md"))
        } else {
            PathBuf::from(file)
        };
        self.outbox.push(Request::Export {
            session: Box::new(session),
            circuit: Box::new(self.circuit.file.clone()),
            path: path.clone(),
        });
        self.status = format!("exporting to {}…", path.display());
    }

    fn annotation_mut(&mut self) -> Option<(NodeId, &mut session::Annotation)> {
        let n = self.selected?;
        Some((n, self.annotations.entry(n).or_default()))
    }

    /// `:label`, `:note`, `:tags`, `:status`, `:confidence`, `:resolve` on the selected node.
    pub fn annotate(&mut self, change: Annotate) {
        let Some((n, a)) = self.annotation_mut() else {
            self.status = "no node selected".into();
            return;
        };
        self.status = match change {
            Annotate::Label(label) => {
                a.label = label;
                format!("{n}: label {:?}", a.label)
            }
            Annotate::Note(notes) => {
                a.notes = notes;
                format!("{n}: notes set")
            }
            Annotate::Tags(tags) => {
                a.tags = tags;
                format!("{n}: tags {}", a.tags.join(", "))
            }
            Annotate::Status(s) => {
                a.status = s;
                format!("{n}: {}", s.name())
            }
            Annotate::Confidence(Some(c)) => {
                a.confidence = Some(c);
                format!("{n}: confidence {c:.2}")
            }
            Annotate::Confidence(None) => {
                a.confidence = None;
                format!("{n}: confidence cleared")
            }
            Annotate::Resolve(i) => match i.checked_sub(1) {
                Some(i) if a.resolve(i) => format!("{n}: label conflict resolved: {:?}", a.label),
                _ if a.conflict.is_empty() => format!("{n} has no label conflict"),
                _ => format!("resolve takes 1..{} (the candidates shown)", a.conflict.len()),
            },
        };
        self.note_unsaved();
    }

    /// `:accept`: the selected node's automatic explanation becomes its label, with the explanation and its
    /// held-out score attached as evidence (so that the export can mark the label automatic).
    pub fn accept_explanation(&mut self) {
        let Some(n) = self.selected else {
            self.status = "no node selected".into();
            return;
        };
        let Some(auto) = self.auto.get(&n).cloned() else {
            self.status = format!("{n}: no automatic explanation; make them with `circuitscope explain`");
            return;
        };
        let a = self.annotations.entry(n).or_default();
        a.label = auto.text.clone();
        let evidence = session::Evidence::Explanation {
            text: auto.text,
            correlation: auto.correlation,
            precision: auto.precision,
            recall: auto.recall,
        };
        if !a.evidence.contains(&evidence) {
            a.evidence.push(evidence);
        }
        self.status = format!("{n}: label {:?} (automatic, {})", a.label, auto.score);
        self.note_unsaved();
    }

    /// Appends to the status that the change just made will not be saved, when the session is read-only: the
    /// answer must not read as if the change were kept.
    pub(crate) fn note_unsaved(&mut self) {
        if let Some(why) = self.session.as_ref().and_then(|st| st.read_only.as_ref()) {
            self.status = format!("{} · read-only session, not saved: {why}", self.status);
        }
    }

    /// Cycles the selected node's status.
    pub fn cycle_status(&mut self) {
        if let Some((n, a)) = self.annotation_mut() {
            a.status = a.status.next();
            self.status = format!("{n}: {}", a.status.name());
            self.note_unsaved();
        }
    }

    /// Opens the command line prefilled with `cmd` and the current value, for editing.
    pub fn edit_field(&mut self, cmd: &str) {
        let Some(n) = self.selected else {
            self.status = "no node selected".into();
            return;
        };
        let a = self.annotations.get(&n).cloned().unwrap_or_default();
        // Escaped as the command line reads it back, so that new lines and backslashes survive the edit.
        let cur = super::command::escape(&match cmd {
            "label" => a.label,
            "note" => a.notes,
            "tags" => a.tags.join(", "),
            _ => String::new(),
        });
        self.command = format!("{cmd} {cur}");
        self.mode = super::app::Mode::Command;
    }

    /// Evidence from the lab's current run: the prompt, its tokens, the selected and marked nodes' values at the
    /// cursor token, the logit difference and the active ablations.
    pub fn prompt_evidence(&self, run: &RunSummary) -> Evidence {
        let pos = self.lab.cursor_in(run);
        let mut magnitudes = BTreeMap::new();
        for n in self.selected.iter().chain(self.marks.iter()) {
            if let Some(v) = run.acts.get(n).and_then(|v| v.get(pos)) {
                magnitudes.insert(*n, *v);
            }
        }
        Evidence::Prompt {
            prompt: run.text.clone(),
            tokens: run.tokens.clone(),
            position: pos,
            magnitudes,
            logit_diff: run.logit_diff(),
            ablations: run.ablations.iter().map(to_spec).collect(),
            note: String::new(),
        }
    }

    /// `E` / `:evidence`: attaches the current prompt's measurement to the selected node.
    pub fn attach_prompt_evidence(&mut self) {
        let Some(run) = self.lab.run.clone() else {
            self.status = "no run yet to attach".into();
            return;
        };
        if let Some(why) = self.run_staleness() {
            self.status = format!("evidence refused: the lab's numbers are stale ({why})");
            return;
        }
        let ev = self.prompt_evidence(&run);
        match self.annotation_mut() {
            Some((n, a)) => {
                a.evidence.push(ev);
                self.status = format!("{n}: prompt evidence attached ({} pieces)", a.evidence.len());
                self.note_unsaved();
            }
            None => self.status = "no node selected".into(),
        }
    }

    /// `Ctrl-e` / `:evidence ablation`: attaches the last ablation change and its effect to the selected node.
    pub fn attach_ablation_evidence(&mut self) {
        let Some(ev) = self.lab.last_ablation.clone() else {
            self.status = "no ablation result yet (toggle one with a / A first)".into();
            return;
        };
        if let Some(why) = self.run_staleness() {
            self.status = format!("evidence refused: the lab's numbers are stale ({why})");
            return;
        }
        match self.annotation_mut() {
            Some((n, a)) => {
                a.evidence.push(ev);
                self.status = format!("{n}: ablation evidence attached ({} pieces)", a.evidence.len());
                self.note_unsaved();
            }
            None => self.status = "no node selected".into(),
        }
    }

    /// Records an ablation change when a run's ablations differ from the previous run's on the same prompt.
    pub fn note_ablation_result(&mut self, prev: &RunSummary, new: &RunSummary) {
        if prev.text != new.text || prev.ablations == new.ablations {
            return;
        }
        let before: Vec<String> = prev
            .ablations
            .iter()
            .map(|a| format!("{} {}", a.node, a.kind.name()))
            .collect();
        self.lab.last_ablation = Some(Evidence::Ablation {
            ablations: new.ablations.iter().map(to_spec).collect(),
            prompt: new.text.clone(),
            logit_diff_before: prev.logit_diff(),
            logit_diff_after: new.logit_diff(),
            loss_before: prev.task_loss,
            loss_after: new.task_loss,
            note: if before.is_empty() {
                "before: no ablations".into()
            } else {
                format!("before: {}", before.join(", "))
            },
        });
    }

    /// `:keep [NAME]`: saves the prompt in the session, with its logit difference and ablations when the lab's
    /// run is of it (a stale run's numbers are not kept); `:recall NAME|N` brings one back.
    pub fn keep_prompt(&mut self, name: &str) {
        let text = self.prompt_text();
        let measured = match (&self.lab.run, self.run_staleness()) {
            (Some(r), None) => Some((r.logit_diff(), r.ablations.iter().map(to_spec).collect())),
            _ => None,
        };
        let Some(st) = self.session.as_mut() else {
            self.status = "no session to keep prompts in".into();
            return;
        };
        let name = if name.is_empty() {
            format!("prompt {}", st.base.saved_prompts.len() + 1)
        } else {
            name.to_string()
        };
        let (logit_diff, ablations) = measured.clone().unwrap_or((None, Vec::new()));
        st.base.saved_prompts.push(SavedPrompt {
            name: name.clone(),
            text,
            logit_diff,
            ablations,
        });
        self.status = match (measured, logit_diff) {
            (Some(_), Some(d)) => format!("kept the prompt as {name:?} (logit diff A−B {d:+.3})"),
            (Some(_), None) => format!("kept the prompt as {name:?}"),
            (None, _) => format!("kept the prompt as {name:?} (no logit diff: the lab's run is not of it yet)"),
        };
        self.note_unsaved();
    }

    /// `:summary [TEXT]`: sets the session's summary (the mechanism, written up; `\n` for a new line), or with
    /// no text opens the command line prefilled with the current one for editing.
    pub fn set_summary(&mut self, text: Option<String>) {
        let Some(st) = self.session.as_mut() else {
            self.status = "no session to keep a summary in".into();
            return;
        };
        match text {
            None => {
                self.command = format!("summary {}", super::command::escape(&st.base.summary));
                self.mode = super::app::Mode::Command;
            }
            Some(t) if t.is_empty() => {
                if st.base.summary.is_empty() {
                    self.status = "the summary is already empty".into();
                } else {
                    st.base.summary.clear();
                    self.status = "summary cleared".into();
                    self.note_unsaved();
                }
            }
            Some(t) => {
                st.base.summary = t;
                self.status = format!(
                    "summary set ({} lines, {} characters; :export writes it as the report's Mechanism)",
                    st.base.summary.lines().count(),
                    st.base.summary.chars().count()
                );
                self.note_unsaved();
            }
        }
    }

    /// `:recall NAME|N`: puts a kept prompt (by name, or by its 1-based number) in the editor and runs it.
    pub fn recall_prompt(&mut self, which: &str) {
        let found = self.session.as_ref().and_then(|st| {
            let v = &st.base.saved_prompts;
            which
                .parse::<usize>()
                .ok()
                .and_then(|i| v.get(i.checked_sub(1)?))
                .or_else(|| v.iter().find(|p| p.name == which))
                .cloned()
        });
        match found {
            Some(p) => {
                let mut ta = ratatui_textarea::TextArea::new(p.text.split('\n').map(str::to_string).collect());
                ta.move_cursor(ratatui_textarea::CursorMove::Bottom);
                ta.move_cursor(ratatui_textarea::CursorMove::End);
                self.prompt = ta;
                self.request_run();
                self.status = format!("recalled {:?}", p.name);
            }
            None => self.status = format!("no kept prompt {which:?}"),
        }
    }
}
