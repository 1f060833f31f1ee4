//! `session merge A B`: two analysts' sessions of the same model combined. Annotations are united; where the
//! labels disagree both are kept as a conflict (`Annotation::conflict`) that the UI shows and `:resolve` settles.
//! The lab state (prompt, pinned prompt, ablations, cursor) and the Attribution screen's pins are A's.

use super::{Annotation, LabelCandidate, Result, Session, SessionError};

/// Merges `b` into `a`. `a_name` and `b_name` say where conflicting labels came from.
pub fn merge(a: &Session, b: &Session, a_name: &str, b_name: &str) -> Result<Session> {
    if a.model.fingerprint != b.model.fingerprint {
        return Err(SessionError::DifferentModels {
            a: a_name.to_string(),
            b: b_name.to_string(),
            a_fingerprint: a.model.fingerprint.clone(),
            b_fingerprint: b.model.fingerprint.clone(),
        });
    }
    let mut out = a.clone();
    out.created = a.created.clone().min(b.created.clone());
    out.modified = a.modified.clone().max(b.modified.clone());
    for m in &b.marks {
        if !out.marks.contains(m) {
            out.marks.push(*m);
        }
    }
    out.marks.sort();
    for p in &b.saved_prompts {
        if !out.saved_prompts.iter().any(|q| q.text == p.text) {
            out.saved_prompts.push(p.clone());
        }
    }
    out.summary = join_text(&a.summary, &b.summary, b_name);
    for (node, bn) in &b.annotations {
        match out.annotations.get_mut(node) {
            None => {
                out.annotations.insert(*node, bn.clone());
            }
            Some(an) => merge_annotation(an, bn, a_name, b_name),
        }
    }
    Ok(out)
}

fn merge_annotation(a: &mut Annotation, b: &Annotation, a_name: &str, b_name: &str) {
    // Earlier conflicts of either side are carried over, then this merge's labels.
    let mut cands: Vec<LabelCandidate> = a.conflict.clone();
    let differ = !a.label.is_empty() && !b.label.is_empty() && a.label.trim() != b.label.trim();
    if differ {
        if cands.is_empty() {
            cands.push(LabelCandidate {
                label: a.label.clone(),
                source: a_name.to_string(),
            });
        }
        let incoming = if b.conflict.is_empty() {
            vec![LabelCandidate {
                label: b.label.clone(),
                source: b_name.to_string(),
            }]
        } else {
            b.conflict.clone()
        };
        for c in incoming {
            if !cands.iter().any(|x| x.label == c.label) {
                cands.push(c);
            }
        }
    } else {
        for c in &b.conflict {
            if !cands.iter().any(|x| x.label == c.label) {
                cands.push(c.clone());
            }
        }
    }
    a.conflict = cands;
    if a.label.is_empty() {
        a.label = b.label.clone();
    }
    a.notes = join_text(&a.notes, &b.notes, b_name);
    for t in &b.tags {
        if !a.tags.contains(t) {
            a.tags.push(t.clone());
        }
    }
    // Agreement is kept; a disagreement falls back to the weaker claim.
    if a.status != b.status {
        a.status = super::Status::Hypothesis;
    }
    a.confidence = match (a.confidence, b.confidence) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    for e in &b.evidence {
        if !a.evidence.contains(e) {
            a.evidence.push(e.clone());
        }
    }
}

/// Both texts when they differ (B's under a line naming it), else the one there is.
fn join_text(a: &str, b: &str, b_name: &str) -> String {
    if b.trim().is_empty() || a.trim() == b.trim() {
        a.to_string()
    } else if a.trim().is_empty() {
        b.to_string()
    } else {
        format!("{a}\n\n(from {b_name})\n{b}")
    }
}
