//! The report of a session: markdown (GitHub-flavoured, with a mermaid flowchart) or JSON.
//!
//! Everything that comes from tokens or from the analyst (labels, notes, prompts, token strings) goes through
//! [`md_text`] / [`mermaid_text`], so that the report stays valid markdown whatever it contains: pipes,
//! backticks, newlines, HTML, control characters, unicode.

pub mod neuronpedia;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::analysis::scan::ScanIndex;
use crate::circuit::{halved, CircuitFile, EdgeEnd, NodeId};
use crate::session::{Evidence, Session, Status};
use crate::tokenize::Tokenizer;

/// A JSON report's format version (`--json`).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// One pretraining exemplar, with display tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownExemplar {
    /// The context window's tokens as displayed.
    pub tokens: Vec<String>,
    /// The node's activation at each of those tokens; same length as `tokens`.
    pub acts: Vec<f32>,
    /// Index into `tokens` of the token the exemplar was chosen for.
    pub pivot: usize,
}

/// What a report is made of.
pub struct ReportInput<'a> {
    /// The analyst's session: annotations, evidence, summary.
    pub session: &'a Session,
    /// The circuit the session annotates.
    pub circuit: &'a CircuitFile,
    /// Node → its top exemplars (largest activation first); empty without a scan.
    pub exemplars: BTreeMap<NodeId, Vec<ShownExemplar>>,
    /// Exemplars shown per labeled node.
    pub top_k: usize,
}

/// The top `k` exemplars of each node from a scan, tokens shown with the tokenizer.
pub fn scan_exemplars(
    scan: &ScanIndex,
    tok: &Tokenizer,
    nodes: impl IntoIterator<Item = NodeId>,
    k: usize,
) -> BTreeMap<NodeId, Vec<ShownExemplar>> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let Ok(s) = scan.node(&n) else { continue };
        let v = s
            .top
            .iter()
            .take(k)
            .map(|e| ShownExemplar {
                tokens: e.tokens.iter().map(|&t| tok.token_display(t)).collect(),
                acts: e.acts.clone(),
                pivot: e.pivot,
            })
            .collect();
        out.insert(n, v);
    }
    out
}

/// Markdown-escapes text for use inside a paragraph or a table cell. The characters that can start inline
/// markup anywhere (`\`, backtick, `*`, `_`, brackets, `<`, `>`, `#`, `|`, `~`, `!`, `&`, `$` for GitHub's math)
/// are backslash-escaped, as CommonMark allows, and `\|` keeps a GFM table cell whole; so is punctuation that
/// could open a block at the start (lists, headings, quotes, setext underlines), including `1.`-style numbers.
/// Newlines become `<br>` (the text stays one line), tabs and other control characters visible symbols.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let lead_digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    for (i, c) in s.chars().enumerate() {
        match c {
            '\n' => out.push_str("<br>"),
            '\r' => out.push('␍'),
            '\t' => out.push('⇥'),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '!' | '&' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_punctuation()
                && (i == 0 || (i == lead_digits && lead_digits > 0 && matches!(c, '.' | ')'))) =>
            {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "U+{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// One token of an exemplar or prompt: whitespace made visible, then escaped.
fn md_token(t: &str) -> String {
    md_text(&t.replace('\n', "↵"))
}

/// Most edges a report's flowchart draws (GitHub's mermaid stops at 500).
pub const MERMAID_MAX_EDGES: usize = 300;

/// Text inside a double-quoted mermaid label: mermaid's entity codes for the characters its parser or the
/// surrounding markdown fence would read (`#` first, since the codes contain it).
pub fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            '|' => out.push_str("#124;"),
            '\n' => out.push_str("<br/>"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |x| format!("{x:.4}"))
}

fn status_name(s: Status) -> &'static str {
    s.name()
}

fn exemplar_line(e: &ShownExemplar) -> String {
    let mut s = String::new();
    for (i, t) in e.tokens.iter().enumerate() {
        if i == e.pivot {
            let _ = write!(s, "<b>⟦{}⟧</b>", md_token(t));
        } else {
            s.push_str(&md_token(t));
        }
    }
    let v = e.acts.get(e.pivot).copied().unwrap_or(0.0);
    format!("`{v:+.3}` {s}")
}

fn evidence_lines(ev: &Evidence, node: &NodeId) -> Vec<String> {
    let mut v = Vec::new();
    match ev {
        Evidence::Prompt {
            prompt,
            tokens,
            position,
            magnitudes,
            logit_diff,
            ablations,
            note,
        } => {
            let mut shown = String::new();
            if tokens.is_empty() {
                shown = md_text(prompt);
            } else {
                for (i, t) in tokens.iter().enumerate() {
                    if i == *position {
                        let _ = write!(shown, "<b>⟦{}⟧</b>", md_token(t));
                    } else {
                        shown.push_str(&md_token(t));
                    }
                }
            }
            let own = magnitudes
                .get(node)
                .map_or(String::new(), |x| format!(" · this node `{x:+.3}`"));
            let ld = logit_diff.map_or(String::new(), |x| format!(" · logit diff `{x:+.3}`"));
            let abl = if ablations.is_empty() {
                String::new()
            } else {
                format!(
                    " · with {}",
                    ablations
                        .iter()
                        .map(|a| format!("`{}` {}-ablated", a.node, a.mode.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            v.push(format!("- prompt (token {position}{own}{ld}{abl}): {shown}"));
            if !note.is_empty() {
                v.push(format!("  - {}", md_text(note)));
            }
            let others: Vec<String> = magnitudes
                .iter()
                .filter(|(n, _)| *n != node)
                .map(|(n, x)| format!("`{n}` {x:+.3}"))
                .collect();
            if !others.is_empty() {
                v.push(format!("  - other nodes there: {}", others.join(", ")));
            }
        }
        Evidence::Ablation {
            ablations,
            prompt,
            logit_diff_before,
            logit_diff_after,
            loss_before,
            loss_after,
            note,
        } => {
            let what = ablations
                .iter()
                .map(|a| format!("`{}` {}-ablated", a.node, a.mode.name()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut parts = Vec::new();
            if logit_diff_before.is_some() || logit_diff_after.is_some() {
                parts.push(format!(
                    "logit diff {} → {}",
                    logit_diff_before.map_or("—".into(), |x| format!("`{x:+.3}`")),
                    logit_diff_after.map_or("—".into(), |x| format!("`{x:+.3}`"))
                ));
            }
            if loss_before.is_some() || loss_after.is_some() {
                parts.push(format!(
                    "task loss (halved) {} → {}",
                    loss_before.map_or("—".into(), |x| format!("`{:.4}`", halved(x))),
                    loss_after.map_or("—".into(), |x| format!("`{:.4}`", halved(x)))
                ));
            }
            let on = if prompt.is_empty() {
                String::new()
            } else {
                format!(" on: {}", md_text(&prompt.replace('\n', "↵")))
            };
            v.push(format!("- ablation: {what}: {}{on}", parts.join(", ")));
            if !note.is_empty() {
                v.push(format!("  - {}", md_text(note)));
            }
        }
        Evidence::Explanation {
            text,
            correlation,
            precision,
            recall,
        } => {
            let f = |x: &Option<f32>| x.map_or("—".into(), |x| format!("`{x:.2}`"));
            v.push(format!(
                "- automatic explanation (N2G, `circuitscope explain`): {} · on held-out text: correlation {}, \
                 precision {}, recall {} of \"fires\"",
                md_text(text),
                f(correlation),
                f(precision),
                f(recall)
            ));
        }
    }
    v
}

/// The kept prompts (`:keep`) with the logit difference each had when it was kept, and its ablations.
fn kept_prompts(out: &mut String, s: &Session) {
    if s.saved_prompts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Kept prompts\n\nLogit difference: target A − target B at the last token, when the prompt was kept \
         (— : not measured).\n"
    );
    let _ = writeln!(out, "| name | prompt | logit diff | ablations |\n|---|---|---|---|");
    for p in &s.saved_prompts {
        let ablations = if p.logit_diff.is_none() && p.ablations.is_empty() {
            "—".to_string()
        } else if p.ablations.is_empty() {
            "none".to_string()
        } else {
            p.ablations
                .iter()
                .map(|a| format!("`{}` {}", a.node, a.mode.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ablations} |",
            md_text(&p.name),
            md_text(&p.text.replace('\n', "↵")),
            p.logit_diff.map_or("—".into(), |d| format!("{d:+.3}"))
        );
    }
    let _ = writeln!(out);
}

/// Paragraphs of analyst text: blank lines separate paragraphs, single newlines are line breaks.
fn md_paragraphs(s: &str) -> String {
    s.split("\n\n")
        .map(|p| p.trim_matches('\n'))
        .filter(|p| !p.trim().is_empty())
        .map(md_text)
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn end_name(e: &EdgeEnd) -> String {
    e.to_string()
}

/// The Attribution screen's pinned nodes as a mermaid flowchart: each supernode a `subgraph` with its nodes,
/// the other pinned nodes beside them, and the edges among them from the last graph computed on their prompt.
/// Nothing when nothing is pinned or grouped.
fn attribution_subgraph(out: &mut String, s: &Session) {
    let pins = &s.attribution;
    if pins.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Attribution graph: pinned nodes\n");
    let _ = writeln!(
        out,
        "{} pinned nodes and {} supernodes of the attribution graph of the prompt `{}` (workbench tab 9), with \
         the {} edges among them (each the source's direct contribution to the target's input).\n",
        pins.pinned.len(),
        pins.supernodes.len(),
        md_text(&pins.prompt.replace('\n', "↵")).replace('`', "'"),
        pins.edges.len()
    );
    let mut ids: Vec<&str> = Vec::new();
    for id in pins
        .pinned
        .iter()
        .chain(pins.supernodes.iter().flat_map(|g| g.nodes.iter()))
        .chain(pins.edges.iter().flat_map(|e| [&e.source, &e.target]))
    {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    let key = |id: &str| format!("a{}", ids.iter().position(|x| *x == id).unwrap_or(0));
    let label = |id: &str| {
        let l = id
            .parse::<crate::circuit::PositionedNode>()
            .ok()
            .and_then(|p| s.annotations.get(&p.node))
            .map(|a| a.label.as_str())
            .unwrap_or("");
        if l.is_empty() {
            mermaid_text(id)
        } else {
            format!("{}<br/>{}", mermaid_text(id), mermaid_text(l))
        }
    };
    let _ = writeln!(out, "```mermaid\nflowchart BT");
    let mut grouped: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (k, g) in pins.supernodes.iter().enumerate() {
        let _ = writeln!(out, "  subgraph s{k}[\"{}\"]", mermaid_text(&g.name));
        for id in &g.nodes {
            // A node in two supernodes is drawn in the first; mermaid has one place per node.
            if grouped.insert(id) {
                let _ = writeln!(out, "    {}[\"{}\"]", key(id), label(id));
            }
        }
        let _ = writeln!(out, "  end");
    }
    for id in &ids {
        if !grouped.contains(id) {
            let _ = writeln!(out, "  {}[\"{}\"]", key(id), label(id));
        }
    }
    for e in &pins.edges {
        let _ = writeln!(out, "  {} -->|\"{:+.3}\"| {}", key(&e.source), e.weight, key(&e.target));
    }
    let _ = writeln!(out, "```\n");
}

/// The markdown report.
pub fn markdown(input: &ReportInput) -> String {
    let s = input.session;
    let c = input.circuit;
    let mut out = String::new();
    let model = s
        .model
        .name
        .clone()
        .or_else(|| c.model.name.clone())
        .unwrap_or_else(|| "model".into());
    let task = if c.task.is_empty() { &s.circuit.task } else { &c.task };
    let _ = writeln!(out, "# Circuit report: {} on {}\n", md_text(task), md_text(&model));
    let _ = writeln!(
        out,
        "Model {} (fingerprint `{}`), task {}, circuit file {}. Session created {}, last changed {}.\n",
        md_text(&model),
        md_text(&c.model.fingerprint).replace('`', ""),
        md_text(task),
        md_text(&s.circuit.path),
        md_text(&s.created),
        md_text(&s.modified)
    );
    let mut ids = c.node_ids();
    ids.sort_by_key(|n| n.forward_order());
    let labeled = ids
        .iter()
        .filter(|n| s.annotations.get(n).is_some_and(|a| !a.label.is_empty()))
        .count();
    let _ = writeln!(out, "## Circuit\n");
    let _ = writeln!(
        out,
        "{} nodes of the model's {}, {} edges; {} nodes labeled. Task losses, halved as the reference viewer shows them:\n",
        ids.len(),
        c.model.num_total_nodes,
        c.edges.len(),
        labeled
    );
    let l = c.losses.halved();
    let _ = writeln!(out, "| loss | value |\n|---|---|");
    let _ = writeln!(out, "| full model | {:.4} |", l.full);
    let _ = writeln!(out, "| circuit (rest mean-ablated) | {:.4} |", l.circuit);
    let _ = writeln!(
        out,
        "| sufficiency (circuit alone, held out) | {} |",
        fmt_opt(l.sufficiency)
    );
    let _ = writeln!(out, "| necessity (circuit ablated) | {} |\n", fmt_opt(l.necessity));
    if l.sufficiency.is_none() || l.necessity.is_none() {
        let _ = writeln!(out, "— : not measured in the circuit file.\n");
    }
    if !s.summary.trim().is_empty() {
        let _ = writeln!(out, "## Mechanism\n\n{}\n", md_paragraphs(&s.summary));
    }
    kept_prompts(&mut out, s);

    // Flowchart: nodes in forward order, edge ends outside the circuit drawn once each. GitHub's mermaid refuses
    // charts over 500 edges or 50,000 characters, so a large circuit's chart keeps its strongest edges (by
    // ablation delta, then weight) and the nodes on them; the edge table below lists every edge.
    let drawn: Vec<&crate::circuit::CircuitEdge> = if c.edges.len() > MERMAID_MAX_EDGES {
        let mut v: Vec<&crate::circuit::CircuitEdge> = c.edges.iter().collect();
        let strength = |e: &crate::circuit::CircuitEdge| {
            (
                e.ablation_delta.map_or(f64::NEG_INFINITY, f64::abs),
                e.weight.map_or(0.0, f64::abs),
            )
        };
        v.sort_by(|a, b| {
            let (sa, sb) = (strength(a), strength(b));
            sb.0.total_cmp(&sa.0).then(sb.1.total_cmp(&sa.1))
        });
        v.truncate(MERMAID_MAX_EDGES);
        v
    } else {
        c.edges.iter().collect()
    };
    let capped = drawn.len() < c.edges.len();
    let _ = writeln!(out, "## Flowchart\n");
    if capped {
        let _ = writeln!(
            out,
            "The {} strongest of the circuit's {} edges (by ablation delta, then weight) and the nodes on them; \
             the edge table lists all of them.\n",
            drawn.len(),
            c.edges.len()
        );
    }
    let _ = writeln!(out, "```mermaid\nflowchart TD");
    let on_drawn: std::collections::BTreeSet<String> = drawn
        .iter()
        .flat_map(|e| [end_name(&e.source), end_name(&e.target)])
        .collect();
    let mut key: BTreeMap<String, String> = BTreeMap::new();
    for (i, n) in ids.iter().enumerate() {
        if capped && !on_drawn.contains(&n.to_string()) {
            continue;
        }
        let label = s.annotations.get(n).map(|a| a.label.as_str()).unwrap_or("");
        let label: String = if capped && label.chars().count() > 40 {
            label.chars().take(39).chain(std::iter::once('…')).collect()
        } else {
            label.to_string()
        };
        let text = if label.is_empty() {
            mermaid_text(&n.to_string())
        } else {
            format!("{}<br/>{}", mermaid_text(&n.to_string()), mermaid_text(&label))
        };
        let _ = writeln!(out, "  n{i}[\"{text}\"]");
        key.insert(n.to_string(), format!("n{i}"));
    }
    let mut extra = 0;
    for e in &drawn {
        for end in [&e.source, &e.target] {
            let name = end_name(end);
            if let std::collections::btree_map::Entry::Vacant(v) = key.entry(name) {
                let id = format!("x{extra}");
                extra += 1;
                let _ = writeln!(out, "  {id}([\"{}\"])", mermaid_text(v.key()));
                v.insert(id);
            }
        }
    }
    for e in &drawn {
        let (a, b) = (&key[&end_name(&e.source)], &key[&end_name(&e.target)]);
        match e.weight {
            Some(w) => {
                let _ = writeln!(out, "  {a} -->|\"{w:+.2}\"| {b}");
            }
            None => {
                let _ = writeln!(out, "  {a} --> {b}");
            }
        }
    }
    let _ = writeln!(out, "```\n");

    let _ = writeln!(out, "## Nodes\n");
    let _ = writeln!(
        out,
        "| node | label | status | confidence | Δ loss when ablated | tags |\n|---|---|---|---|---|---|"
    );
    for n in &ids {
        let a = s.annotations.get(n);
        let delta = c.node(n).and_then(|cn| cn.delta_halved(&c.losses));
        let mut label = a.map(|a| md_text(&a.label)).unwrap_or_default();
        if a.is_some_and(|a| !a.conflict.is_empty()) {
            label.push_str(" (label conflict)");
        }
        if a.is_some_and(|a| a.label_is_automatic()) {
            label.push_str(" (automatic)");
        }
        let _ = writeln!(
            out,
            "| `{n}` | {label} | {} | {} | {} | {} |",
            a.map_or("—", |a| status_name(a.status)),
            a.and_then(|a| a.confidence).map_or("—".into(), |x| format!("{x:.2}")),
            delta.map_or("—".into(), |d| format!("{d:+.4}")),
            a.map(|a| a.tags.iter().map(|t| md_text(t)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Edges\n");
    if c.edges.is_empty() {
        let _ = writeln!(out, "The circuit file lists no edges.\n");
    } else {
        let _ = writeln!(
            out,
            "| source | target | weight | Δ loss when ablated |\n|---|---|---|---|"
        );
        for e in &c.edges {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                end_name(&e.source),
                end_name(&e.target),
                e.weight.map_or("—".into(), |w| format!("{w:+.4}")),
                e.ablation_delta.map_or("—".into(), |d| format!("{:+.4}", halved(d)))
            );
        }
        let _ = writeln!(out);
    }

    attribution_subgraph(&mut out, s);

    let _ = writeln!(out, "## Labeled nodes\n");
    let mut any = false;
    for n in &ids {
        let Some(a) = s.annotations.get(n).filter(|a| !a.label.is_empty()) else {
            continue;
        };
        any = true;
        labeled_section(&mut out, n, a, input);
    }
    if !any {
        let _ = writeln!(out, "No node is labeled yet.\n");
    }
    let features = annotated_features(s);
    if !features.is_empty() {
        let _ = writeln!(out, "## SAE features\n");
        let _ = writeln!(
            out,
            "Features of the SAE opened beside the model, annotated in this session.\n\n\
             | feature | label | status | confidence | tags |\n|---|---|---|---|---|"
        );
        for n in &features {
            let a = &s.annotations[n];
            let _ = writeln!(
                out,
                "| `{n}` | {} | {} | {} | {} |",
                md_text(&a.label),
                status_name(a.status),
                a.confidence.map_or("—".into(), |x| format!("{x:.2}")),
                a.tags.iter().map(|t| md_text(t)).collect::<Vec<_>>().join(", ")
            );
        }
        let _ = writeln!(out);
        for n in &features {
            if let Some(a) = s.annotations.get(n).filter(|a| !a.label.is_empty()) {
                labeled_section(&mut out, n, a, input);
            }
        }
    }
    let stray: Vec<String> = s
        .annotations
        .keys()
        .filter(|n| c.node(n).is_none() && !n.is_feature())
        .map(|n| format!("`{n}`"))
        .collect();
    if !stray.is_empty() {
        let _ = writeln!(
            out,
            "The session also annotates nodes that are not in this circuit: {}.\n",
            stray.join(", ")
        );
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// One labeled node's section: heading, status line, conflicts, notes, top exemplars and evidence.
fn labeled_section(out: &mut String, n: &NodeId, a: &crate::session::Annotation, input: &ReportInput) {
    let auto = if a.label_is_automatic() { " *(automatic)*" } else { "" };
    let _ = writeln!(out, "### `{n}`: {}{auto}\n", md_text(&a.label));
    let mut meta = vec![format!("status: {}", a.status.name())];
    if let Some(cf) = a.confidence {
        meta.push(format!("confidence {cf:.2}"));
    }
    if !a.tags.is_empty() {
        meta.push(format!(
            "tags: {}",
            a.tags.iter().map(|t| md_text(t)).collect::<Vec<_>>().join(", ")
        ));
    }
    let _ = writeln!(out, "{}\n", meta.join(" · "));
    if !a.conflict.is_empty() {
        let alts: Vec<String> = a
            .conflict
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}) {} (from {})", i + 1, md_text(&c.label), md_text(&c.source)))
            .collect();
        let _ = writeln!(out, "**Label conflict**, unresolved: {}\n", alts.join("; "));
    }
    if !a.notes.trim().is_empty() {
        let _ = writeln!(out, "{}\n", md_paragraphs(&a.notes));
    }
    if let Some(ex) = input.exemplars.get(n).filter(|v| !v.is_empty()) {
        let _ = writeln!(out, "Top exemplars (pivot token in ⟦ ⟧, its activation first):\n");
        for e in ex.iter().take(input.top_k) {
            let _ = writeln!(out, "- {}", exemplar_line(e));
        }
        let _ = writeln!(out);
    }
    if !a.evidence.is_empty() {
        let _ = writeln!(out, "Evidence:\n");
        for ev in &a.evidence {
            for line in evidence_lines(ev, n) {
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = writeln!(out);
    }
}

/// The session's annotated SAE features (`1.resid_mid.sae[12]`), in forward order: they live beside the
/// circuit rather than in it.
fn annotated_features(s: &Session) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = s.annotations.keys().copied().filter(NodeId::is_feature).collect();
    v.sort_by_key(|n| n.forward_order());
    v
}

/// The same report as JSON (keys documented in the README).
pub fn json(input: &ReportInput) -> serde_json::Value {
    let s = input.session;
    let c = input.circuit;
    let mut ids = c.node_ids();
    ids.sort_by_key(|n| n.forward_order());
    let l = c.losses.halved();
    let features = annotated_features(s);
    let node_json = |n: &NodeId| {
        let a = s.annotations.get(n).cloned().unwrap_or_default();
        let ex: Vec<serde_json::Value> = input
            .exemplars
            .get(n)
            .map(|v| {
                v.iter()
                    .take(input.top_k)
                    .map(|e| json!({"tokens": e.tokens, "acts": e.acts, "pivot": e.pivot}))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "id": n.to_string(),
            "label": a.label,
            "status": a.status.name(),
            "confidence": a.confidence,
            "tags": a.tags,
            "notes": a.notes,
            "ablation_delta": c.node(n).and_then(|cn| cn.delta_halved(&c.losses)),
            "conflict": a.conflict,
            "evidence": a.evidence,
            "exemplars": ex,
        })
    };
    let nodes: Vec<serde_json::Value> = ids.iter().map(node_json).collect();
    let features: Vec<serde_json::Value> = features.iter().map(node_json).collect();
    let edges: Vec<serde_json::Value> = c
        .edges
        .iter()
        .map(|e| {
            json!({
                "source": end_name(&e.source),
                "target": end_name(&e.target),
                "weight": e.weight,
                "ablation_delta": e.ablation_delta.map(halved),
            })
        })
        .collect();
    json!({
        "format_version": REPORT_FORMAT_VERSION,
        "model": {"name": s.model.name.clone().or_else(|| c.model.name.clone()), "fingerprint": c.model.fingerprint},
        "task": if c.task.is_empty() { s.circuit.task.clone() } else { c.task.clone() },
        "circuit": {
            "path": s.circuit.path,
            "nodes": ids.len(),
            "model_nodes": c.model.num_total_nodes,
            "edges": c.edges.len(),
            "losses": {"full": l.full, "circuit": l.circuit, "sufficiency": l.sufficiency, "necessity": l.necessity},
        },
        "summary": s.summary,
        "kept_prompts": s
            .saved_prompts
            .iter()
            .map(|p| json!({"name": p.name, "text": p.text, "logit_diff": p.logit_diff, "ablations": p.ablations}))
            .collect::<Vec<_>>(),
        "nodes": nodes,
        "features": features,
        "edges": edges,
    })
}
