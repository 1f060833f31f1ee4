//! A low-rank matrix kept as its two factors, `left (n, r) · right (r, m)`: the full OV and QK circuits are
//! vocab x vocab but rank d_head, so their top entries are found row block by row block with a Cauchy-Schwarz
//! bound that skips rows which cannot beat the current k-th entry, never holding the whole product.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::Serialize;

use super::mat::Mat;
use super::{FrameworkError, ShapeProblem};

/// `left · right`, never multiplied out unless asked.
#[derive(Debug, Clone)]
pub struct Factored {
    /// `(n, r)`.
    pub left: Mat,
    /// `(r, m)`.
    pub right: Mat,
}

/// One entry of a matrix: row, column, value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Entry {
    /// Row index (source token, query token or query position).
    pub row: usize,
    /// Column index (promoted token, key token or key position).
    pub col: usize,
    /// The value.
    pub value: f32,
}

/// Rows multiplied out at once: one gemm call per block.
const ROW_BLOCK: usize = 256;

/// Min-heap order by value (the heap keeps the k largest).
#[derive(PartialEq)]
struct ByValue(Entry);
impl Eq for ByValue {}
impl PartialOrd for ByValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByValue {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the smallest kept value on top.
        other.0.value.total_cmp(&self.0.value)
    }
}

impl Factored {
    /// `left (n, r) · right (r, m)`; the inner dimensions must agree.
    pub fn new(left: Mat, right: Mat) -> Result<Self, FrameworkError> {
        if left.cols != right.rows {
            return Err(FrameworkError::Shape(ShapeProblem::Chain {
                left: (left.rows, left.cols),
                right: (right.rows, right.cols),
            }));
        }
        Ok(Factored { left, right })
    }

    /// `(n, m)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.left.rows, self.right.cols)
    }

    /// The whole product (for small matrices and tests).
    pub fn materialise(&self) -> Result<Mat, FrameworkError> {
        self.left.matmul(&self.right)
    }

    /// The `k` largest entries, largest first. With `causal`, only entries with `col <= row` count (key
    /// positions a query can see). Exact: a row is skipped only when no entry of it can exceed the current k-th.
    pub fn top_entries(&self, k: usize, causal: bool) -> Result<Vec<Entry>, FrameworkError> {
        let (n, m) = self.shape();
        if k == 0 || n == 0 || m == 0 {
            return Ok(Vec::new());
        }
        let row_norm: Vec<f32> = (0..n).map(|i| norm(self.left.row(i))).collect();
        let col_norm_max = (0..m).map(|j| norm(&self.right.col(j))).fold(0f32, f32::max);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| row_norm[b].total_cmp(&row_norm[a]));
        let mut heap: BinaryHeap<ByValue> = BinaryHeap::with_capacity(k + 1);
        for block in order.chunks(ROW_BLOCK) {
            if heap.len() == k {
                let kth = heap.peek().map_or(f32::NEG_INFINITY, |e| e.0.value);
                // Rows come in decreasing norm: once the bound fails for the block's first row it fails for all.
                if row_norm[block[0]] * col_norm_max * (1.0 + 1e-5) < kth {
                    break;
                }
            }
            let rows = self.rows_of(block)?;
            for (bi, &i) in block.iter().enumerate() {
                push_row(&mut heap, k, i, rows.row(bi), causal);
            }
        }
        Ok(sorted(heap))
    }

    /// Rows `rows` of the product, `(rows.len(), m)`.
    pub fn rows_of(&self, rows: &[usize]) -> Result<Mat, FrameworkError> {
        let r = self.left.cols;
        let mut data = Vec::with_capacity(rows.len() * r);
        for &i in rows {
            data.extend_from_slice(self.left.row(i));
        }
        Mat::new(rows.len(), r, data)?.matmul(&self.right)
    }
}

/// The `k` largest entries of a dense matrix, largest first (with `causal`, only `col <= row`).
pub fn top_of_dense(m: &Mat, k: usize, causal: bool) -> Vec<Entry> {
    let mut heap: BinaryHeap<ByValue> = BinaryHeap::with_capacity(k + 1);
    if k > 0 {
        for i in 0..m.rows {
            push_row(&mut heap, k, i, m.row(i), causal);
        }
    }
    sorted(heap)
}

fn push_row(heap: &mut BinaryHeap<ByValue>, k: usize, i: usize, row: &[f32], causal: bool) {
    let limit = if causal { (i + 1).min(row.len()) } else { row.len() };
    for (j, &value) in row[..limit].iter().enumerate() {
        if heap.len() < k {
            heap.push(ByValue(Entry { row: i, col: j, value }));
        } else if value > heap.peek().map_or(f32::NEG_INFINITY, |e| e.0.value) {
            heap.pop();
            heap.push(ByValue(Entry { row: i, col: j, value }));
        }
    }
}

fn sorted(heap: BinaryHeap<ByValue>) -> Vec<Entry> {
    let mut out: Vec<Entry> = heap.into_iter().map(|e| e.0).collect();
    out.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then(a.row.cmp(&b.row))
            .then(a.col.cmp(&b.col))
    });
    out
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuitscope_kernels::rng::SplitMix64;

    fn random(rng: &mut SplitMix64, r: usize, c: usize) -> Mat {
        Mat::new(r, c, (0..r * c).map(|_| rng.uniform_f32(-1.0, 1.0)).collect()).unwrap()
    }

    #[test]
    fn top_entries_match_the_materialised_product() {
        let mut rng = SplitMix64::new(3);
        // More rows than one block, so that the bound and the block loop both run.
        let f = Factored::new(random(&mut rng, 700, 5), random(&mut rng, 5, 300)).unwrap();
        let full = f.materialise().unwrap();
        for causal in [false, true] {
            let mut all: Vec<Entry> = (0..700)
                .flat_map(|i| (0..300).map(move |j| (i, j)))
                .filter(|&(i, j)| !causal || j <= i)
                .map(|(i, j)| Entry {
                    row: i,
                    col: j,
                    value: full.at(i, j),
                })
                .collect();
            all.sort_by(|a, b| b.value.total_cmp(&a.value));
            let top = f.top_entries(10, causal).unwrap();
            assert_eq!(top.len(), 10);
            let dense = top_of_dense(&full, 10, causal);
            assert!(top.iter().zip(&dense).all(|(a, b)| (a.value - b.value).abs() < 1e-4));
            for (got, want) in top.iter().zip(&all) {
                assert!((got.value - want.value).abs() < 1e-4, "{got:?} vs {want:?}");
            }
        }
    }
}
