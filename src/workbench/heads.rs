//! The Heads screen's numbers: the framework lens (`circuitscope heads`) summarised per head, the composition
//! scores between heads, and every head's attention on the lab's prompt, as owned vectors and strings.

use crate::analysis::attention_pattern::AttnPattern;
use crate::analysis::heads::HeadsReport;

/// One head's scores and top-token tables.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadRow {
    /// Layer index.
    pub layer: usize,
    /// Head index within the layer.
    pub head: usize,
    /// Induction detector score (repeated random sequences).
    pub induction: f32,
    /// Previous-token detector score.
    pub previous_token: f32,
    /// Duplicate-token detector score.
    pub duplicate_token: f32,
    /// OV copying score, Σ Re λ / Σ |λ| over W_V·W_O's eigenvalues (NaN for a zero OV matrix).
    pub copying: f32,
    /// Mean attention the sink slot takes on the detector sequences (models with sinks).
    pub sink_share: Option<f32>,
    /// Largest entries of the full OV circuit: (source token, promoted token, value).
    pub ov_top: Vec<(String, String, f32)>,
    /// Largest entries of the full QK circuit: (query token, key token, value).
    pub qk_top: Vec<(String, String, f32)>,
    /// Whether `ov_top` is exact, else (rows scanned, rows) of the bounded scan (`heads --top-rows`).
    pub ov_partial: Option<(usize, usize)>,
    /// The same for `qk_top`.
    pub qk_partial: Option<(usize, usize)>,
}

/// Everything the Heads screen draws.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsView {
    /// Layers.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Per head, layer-major.
    pub heads: Vec<HeadRow>,
    /// Q-, K- and V-composition `[L, H, L, H]` (earlier head, later head), as `heads --dump` writes them.
    pub composition: [Vec<f32>; 3],
    /// The random baseline's (mean, std) of the composition score.
    pub baseline: (f32, f32),
    /// The induction loss (first half, second half) on the detector sequences.
    pub induction_loss: Option<(f32, f32)>,
    /// The prompt the patterns are of.
    pub text: String,
    /// Its tokens as shown.
    pub tokens: Vec<String>,
    /// Every head's attention on the prompt, layer-major.
    pub patterns: Vec<AttnPattern>,
}

impl HeadsView {
    /// The view of `report` with the prompt's patterns (every head, layer-major); `token` shows a token id.
    pub fn build(
        report: &HeadsReport,
        text: &str,
        tokens: Vec<String>,
        patterns: Vec<AttnPattern>,
        token: impl Fn(u32) -> String,
    ) -> HeadsView {
        let w = &report.weights;
        let table = |es: &[crate::analysis::framework::Entry]| {
            es.iter()
                .map(|e| (token(e.row as u32), token(e.col as u32), e.value))
                .collect()
        };
        let c = &report.composition;
        HeadsView {
            n_layers: w.n_layers(),
            n_heads: w.n_heads(),
            heads: report
                .heads
                .iter()
                .map(|s| HeadRow {
                    layer: s.layer,
                    head: s.head,
                    induction: s.induction,
                    previous_token: s.previous_token,
                    duplicate_token: s.duplicate_token,
                    copying: s.ov_copying_score,
                    sink_share: s.sink_share,
                    ov_top: table(&s.ov_top),
                    qk_top: table(&s.qk_top),
                    ov_partial: (!s.ov_scan.exact).then_some((s.ov_scan.rows_scanned, s.ov_scan.rows)),
                    qk_partial: (!s.qk_scan.exact).then_some((s.qk_scan.rows_scanned, s.qk_scan.rows)),
                })
                .collect(),
            composition: [c.q.clone(), c.k.clone(), c.v.clone()],
            baseline: (c.baseline.mean, c.baseline.std),
            induction_loss: report.induction_loss.map(|l| (l.first_half, l.second_half)),
            text: text.to_string(),
            tokens,
            patterns,
        }
    }

    /// Head `(layer, head)`'s row.
    pub fn head(&self, layer: usize, head: usize) -> Option<&HeadRow> {
        self.heads
            .get(layer * self.n_heads + head)
            .filter(|_| head < self.n_heads)
    }

    /// Head `(layer, head)`'s attention on the prompt.
    pub fn pattern(&self, layer: usize, head: usize) -> Option<&AttnPattern> {
        self.patterns
            .get(layer * self.n_heads + head)
            .filter(|_| head < self.n_heads)
    }

    /// The composition score (kind 0: Q, 1: K, 2: V) between head `a` and head `b` in either order: the
    /// earlier one's output into the later one; None within one layer.
    pub fn composition_between(&self, kind: usize, a: (usize, usize), b: (usize, usize)) -> Option<f32> {
        let (from, to) = match a.0.cmp(&b.0) {
            std::cmp::Ordering::Less => (a, b),
            std::cmp::Ordering::Greater => (b, a),
            std::cmp::Ordering::Equal => return None,
        };
        let (l, h) = (self.n_layers, self.n_heads);
        let i = ((from.0 * h + from.1) * l + to.0) * h + to.1;
        self.composition.get(kind)?.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::heads::{heads, HeadsOptions};
    use crate::model::{Gpt, LoadOptions};

    #[test]
    fn a_bounded_scan_marks_its_tables_partial_and_a_full_one_does_not() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/tiny-attn-only");
        let (model, _) = Gpt::load(&dir, LoadOptions::default()).unwrap();
        let opts = HeadsOptions {
            sequences: 1,
            half_len: 8,
            baseline_samples: 4,
            ..HeadsOptions::default()
        };
        let view = |opts: &HeadsOptions| {
            let report = heads(&model, opts).unwrap();
            HeadsView::build(&report, "", Vec::new(), Vec::new(), |id| id.to_string())
        };
        let full = view(&opts);
        assert!(full
            .heads
            .iter()
            .all(|h| h.ov_partial.is_none() && h.qk_partial.is_none()));
        let cut = view(&HeadsOptions {
            top_rows: Some(2),
            ..opts
        });
        let vocab = model.config.vocab_size;
        assert!(
            cut.heads.iter().any(|h| h.ov_partial == Some((2, vocab))),
            "{:?}",
            cut.heads[0].ov_partial
        );
    }
}
