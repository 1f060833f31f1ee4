//! The token embedding, the unembedding and the position table, read once from the checkpoint as (rows, D)
//! row-major f32, and the lenses on one residual channel: a column's entries sorted, their histogram, a window
//! of the position table.

use candle_core::DType;

use crate::model::weight_names as wn;
use crate::model::{Checkpoint, Config, ModelError};

/// The vocabulary-sized tables of a model, dense f32.
#[derive(Debug, Clone)]
pub struct EmbeddingTables {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Residual width D.
    pub d_model: usize,
    /// (V, D) token embedding.
    pub wte: Vec<f32>,
    /// (V, D) unembedding: lm_head, else the tied wte.
    pub unembed: Vec<f32>,
    /// (rows, cols, values) of the position table, row-major; None when the model has none.
    pub wpe: Option<(usize, usize, Vec<f32>)>,
}

/// wpe[:, first..first + channels] as (positions, channels) row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct WpeWindow {
    /// Rows (positions) in the window.
    pub positions: usize,
    /// First channel of the window.
    pub first: usize,
    /// Channels in the window.
    pub channels: usize,
    /// (positions, channels) values, row-major.
    pub values: Vec<f32>,
}

impl WpeWindow {
    /// The value at position `pos`, residual channel `ch` (inside the window).
    pub fn at(&self, pos: usize, ch: usize) -> f32 {
        self.values[pos * self.channels + (ch - self.first)]
    }
}

impl EmbeddingTables {
    /// Reads wte, lm_head (when untied) and wpe from the checkpoint.
    pub fn read(ckpt: &Checkpoint, cfg: &Config) -> Result<EmbeddingTables, ModelError> {
        let dense = |name: &str| -> Result<Vec<f32>, ModelError> {
            let t = ckpt
                .require(name, &[cfg.vocab_size, cfg.d_model])?
                .to_dense()?
                .to_dtype(DType::F32)?;
            Ok(t.flatten_all()?.to_vec1()?)
        };
        let wte = dense(wn::WTE)?;
        let unembed = if ckpt.get(wn::LM_HEAD).is_some() {
            dense(wn::LM_HEAD)?
        } else {
            wte.clone()
        };
        let wpe = match ckpt.get(wn::WPE) {
            Some(t) => {
                let t = t.to_dense()?.to_dtype(DType::F32)?;
                match t.dims() {
                    [rows, cols] => Some((*rows, *cols, t.flatten_all()?.to_vec1()?)),
                    _ => None,
                }
            }
            None => None,
        };
        Ok(EmbeddingTables {
            vocab: cfg.vocab_size,
            d_model: cfg.d_model,
            wte,
            unembed,
            wpe,
        })
    }

    /// The nonzero entries (token id, value) of column `c` of a (V, D) table, sorted by |value| when `abs`,
    /// else largest first; ties by token id.
    pub fn column_sorted(&self, table: &[f32], c: usize, abs: bool) -> Vec<(u32, f32)> {
        let d = self.d_model;
        let mut col: Vec<(u32, f32)> = (0..self.vocab)
            .map(|t| (t as u32, table[t * d + c]))
            .filter(|(_, x)| *x != 0.0)
            .collect();
        let key = |x: f32| if abs { x.abs() } else { x };
        col.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0)));
        col
    }

    /// A window of `width` position-table channels around `channel` (clamped inside D), when the model has a
    /// position table indexed by residual channel.
    pub fn wpe_window(&self, channel: usize, width: usize) -> Option<WpeWindow> {
        let d = self.d_model;
        let (rows, cols, v) = self.wpe.as_ref().filter(|(_, cols, _)| *cols == d)?;
        let channels = width.min(d);
        let first = channel.saturating_sub(channels / 2).min(d - channels);
        let mut values = Vec::with_capacity(rows * channels);
        for p in 0..*rows {
            values.extend_from_slice(&v[p * cols + first..p * cols + first + channels]);
        }
        Some(WpeWindow {
            positions: *rows,
            first,
            channels,
            values,
        })
    }
}

/// Counts of `values` in `bins` equal-width bins over their (min, max), with that range; every value in the
/// middle bin when all are equal.
pub fn histogram(values: impl Iterator<Item = f32> + Clone, bins: usize) -> (Vec<u64>, (f32, f32)) {
    let (lo, hi) = values
        .clone()
        .fold(None, |acc: Option<(f32, f32)>, x| match acc {
            None => Some((x, x)),
            Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
        })
        .unwrap_or((0.0, 0.0));
    let mut hist = vec![0u64; bins];
    if bins == 0 {
        return (hist, (lo, hi));
    }
    for x in values {
        let f = if hi > lo { (x - lo) / (hi - lo) } else { 0.5 };
        hist[((f * bins as f32) as usize).min(bins - 1)] += 1;
    }
    (hist, (lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> EmbeddingTables {
        // V = 3, D = 2.
        EmbeddingTables {
            vocab: 3,
            d_model: 2,
            wte: vec![1.0, 0.0, -3.0, 2.0, 2.0, 0.0],
            unembed: vec![],
            wpe: Some((2, 2, vec![0.1, 0.2, 0.3, 0.4])),
        }
    }

    #[test]
    fn columns_sort_by_value_or_magnitude_and_skip_zeros() {
        let t = tables();
        assert_eq!(t.column_sorted(&t.wte, 0, false), vec![(2, 2.0), (0, 1.0), (1, -3.0)]);
        assert_eq!(t.column_sorted(&t.wte, 0, true), vec![(1, -3.0), (2, 2.0), (0, 1.0)]);
        assert_eq!(t.column_sorted(&t.wte, 1, false), vec![(1, 2.0)]);
    }

    #[test]
    fn histogram_spans_min_to_max() {
        let (h, r) = histogram([0.0f32, 1.0, 0.5, 1.0].into_iter(), 2);
        assert_eq!(r, (0.0, 1.0));
        assert_eq!(h, vec![1, 3]);
        let (h, _) = histogram([2.0f32, 2.0].into_iter(), 3);
        assert_eq!(h, vec![0, 2, 0]);
    }

    #[test]
    fn wpe_window_is_clamped_inside_d_model() {
        let w = tables().wpe_window(1, 16).unwrap();
        assert_eq!((w.first, w.channels, w.positions), (0, 2, 2));
        assert_eq!(w.at(1, 1), 0.4);
    }
}
