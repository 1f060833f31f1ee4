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

/// The result of a bounded top-entry scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopEntries {
    /// The largest entries found, largest first.
    pub entries: Vec<Entry>,
    /// True when these are the matrix's largest entries: every row was scanned, or the bound proved that no
    /// unscanned row holds an entry above the k-th.
    pub exact: bool,
    /// Rows multiplied out.
    pub rows_scanned: usize,
    /// Rows of the matrix.
    pub rows: usize,
    /// When not exact: an upper bound on every entry of the unscanned rows (‖left_i‖·max_j ‖right_j‖ of the
    /// largest unscanned row).
    pub unscanned_bound: Option<f32>,
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
        Ok(self.top_entries_within(k, causal, usize::MAX)?.entries)
    }

    /// The `k` largest entries among at most `max_rows` rows, largest first: rows are multiplied out in
    /// decreasing order of their Cauchy-Schwarz bound ‖left_i‖·max_j ‖right_j‖, and the scan stops when the
    /// bound proves no unscanned row can enter (then the result is exact) or when `max_rows` rows are scanned
    /// (then it is the top among those rows, and [`TopEntries::unscanned_bound`] bounds every entry left out).
    pub fn top_entries_within(&self, k: usize, causal: bool, max_rows: usize) -> Result<TopEntries, FrameworkError> {
        let (n, m) = self.shape();
        let mut out = TopEntries {
            entries: Vec::new(),
            exact: true,
            rows_scanned: 0,
            rows: n,
            unscanned_bound: None,
        };
        if k == 0 || n == 0 || m == 0 {
            return Ok(out);
        }
        let row_norm: Vec<f32> = (0..n).map(|i| norm(self.left.row(i))).collect();
        let col_norm_max = col_norms(&self.right).into_iter().fold(0f32, f32::max);
        // The slack covers f32 rounding in the products, so that the bound stays a bound.
        let bound = |i: usize| row_norm[i] * col_norm_max * (1.0 + 1e-5);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| row_norm[b].total_cmp(&row_norm[a]));
        let mut heap: BinaryHeap<ByValue> = BinaryHeap::with_capacity(k + 1);
        let mut next = 0;
        while next < n {
            let kth = if heap.len() == k {
                heap.peek().map_or(f32::NEG_INFINITY, |e| e.0.value)
            } else {
                f32::NEG_INFINITY
            };
            // Rows come in decreasing norm: once the bound fails for the next row it fails for all the rest.
            if bound(order[next]) < kth {
                break;
            }
            if next >= max_rows {
                out.exact = false;
                out.unscanned_bound = Some(bound(order[next]));
                break;
            }
            let end = (next + ROW_BLOCK).min(n).min(max_rows);
            let block = &order[next..end];
            let rows = self.rows_of(block)?;
            for (bi, &i) in block.iter().enumerate() {
                push_row(&mut heap, k, i, rows.row(bi), causal);
            }
            next = end;
        }
        out.rows_scanned = next;
        out.entries = sorted(heap);
        Ok(out)
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

/// The Euclidean norm of each column of `m`, in one pass over its rows.
fn col_norms(m: &Mat) -> Vec<f32> {
    let mut acc = vec![0f64; m.cols];
    for r in 0..m.rows {
        for (a, &x) in acc.iter_mut().zip(m.row(r)) {
            *a += (x as f64) * (x as f64);
        }
    }
    acc.into_iter().map(|a| a.sqrt() as f32).collect()
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

    #[test]
    fn a_full_budget_is_the_exact_scan() {
        let mut rng = SplitMix64::new(5);
        let f = Factored::new(random(&mut rng, 600, 4), random(&mut rng, 4, 200)).unwrap();
        let exact = f.top_entries(7, false).unwrap();
        let dense = top_of_dense(&f.materialise().unwrap(), 7, false);
        for budget in [600, 10_000, usize::MAX] {
            let t = f.top_entries_within(7, false, budget).unwrap();
            assert!(t.exact && t.unscanned_bound.is_none(), "{t:?}");
            assert_eq!(t.entries, exact);
            assert!(t
                .entries
                .iter()
                .zip(&dense)
                .all(|(a, b)| (a.value - b.value).abs() < 1e-4));
        }
    }

    #[test]
    fn a_short_budget_is_flagged_and_its_bound_holds() {
        let mut rng = SplitMix64::new(6);
        // Random rows of rank 64 (a head's d_head): similar norms and small cosines, so the bound prunes nothing
        // and a budget of 300 rows stops the scan.
        let f = Factored::new(random(&mut rng, 700, 64), random(&mut rng, 64, 250)).unwrap();
        let full = f.materialise().unwrap();
        let t = f.top_entries_within(5, false, 300).unwrap();
        assert!(!t.exact);
        assert_eq!((t.rows_scanned, t.rows), (300, 700));
        let bound = t.unscanned_bound.unwrap();
        // The scanned rows are the 300 with the largest left norms; every other entry is under the bound.
        let row_norm: Vec<f32> = (0..700).map(|i| norm(f.left.row(i))).collect();
        let mut order: Vec<usize> = (0..700).collect();
        order.sort_by(|&a, &b| row_norm[b].total_cmp(&row_norm[a]));
        let (scanned, unscanned) = order.split_at(300);
        let unscanned_max = unscanned
            .iter()
            .flat_map(|&i| full.row(i).iter().copied())
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(unscanned_max <= bound, "{unscanned_max} > {bound}");
        // The entries are the top of the scanned rows.
        let mut want: Vec<f32> = scanned.iter().flat_map(|&i| full.row(i).iter().copied()).collect();
        want.sort_by(|a, b| b.total_cmp(a));
        for (got, w) in t.entries.iter().zip(&want) {
            assert!(scanned.contains(&got.row));
            assert!((got.value - w).abs() < 1e-4, "{got:?} vs {w}");
        }
        // Causal scans obey the same bound.
        let c = f.top_entries_within(5, true, 300).unwrap();
        assert!(!c.exact && c.entries.iter().all(|e| e.col <= e.row));
    }

    #[test]
    fn the_bound_proves_a_short_scan_exact() {
        let mut rng = SplitMix64::new(7);
        let right = random(&mut rng, 4, 50);
        let mut left = random(&mut rng, 400, 4);
        left.data.iter_mut().for_each(|x| *x *= 1e-3);
        // Row 17 points along column 0 of `right`, a hundred times longer than the rest: it holds the maximum,
        // and after scanning it alone the bound rules out every other row.
        let col0 = right.col(0);
        left.data[17 * 4..18 * 4]
            .iter_mut()
            .zip(&col0)
            .for_each(|(x, c)| *x = 100.0 * c);
        let t = f_top(&Factored::new(left, right).unwrap());
        assert!(t.exact && t.unscanned_bound.is_none(), "{t:?}");
        assert_eq!((t.rows_scanned, t.entries[0].row), (1, 17));
    }

    fn f_top(f: &Factored) -> TopEntries {
        f.top_entries_within(1, false, 1).unwrap()
    }
}
