//! The two products a sparse Linear layer needs: `x · Wᵀ` (forward) and `gy · W` (input grad).

use rayon::prelude::*;

use crate::csr::{CsrError, CsrView, RowPtr};

/// Below this many multiply-adds a rayon fork/join costs more than it saves.
const PAR_MIN_WORK: usize = 1 << 16;

/// Nonzeros per row block in the token-parallel paths: 16Ki nnz is 128 KiB of values plus
/// column indices, small enough to stay in L2 while every token of a block reuses it.
const BLOCK_NNZ: usize = 1 << 14;

/// Lets the hot loops be monomorphised per row-pointer width instead of matching on
/// [`RowPtr`] for every row.
trait PtrInt: Copy + Send + Sync {
    fn idx(self) -> usize;
}

impl PtrInt for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

impl PtrInt for u64 {
    #[inline(always)]
    fn idx(self) -> usize {
        // CsrView::new checked every entry is <= nnz, which is a slice length.
        self as usize
    }
}

#[derive(Clone, Copy)]
struct Csr<'a, P> {
    values: &'a [f32],
    col_idx: &'a [u32],
    row_ptr: &'a [P],
    rows: usize,
}

impl<'a, P: PtrInt> Csr<'a, P> {
    #[inline(always)]
    fn row(&self, r: usize) -> (&'a [f32], &'a [u32]) {
        let (s, e) = (self.row_ptr[r].idx(), self.row_ptr[r + 1].idx());
        (&self.values[s..e], &self.col_idx[s..e])
    }

    /// `parts + 1` row boundaries that split the matrix into pieces of roughly equal nnz,
    /// because per-row cost is proportional to nnz and rows can be very uneven.
    fn split_by_nnz(&self, parts: usize) -> Vec<usize> {
        let nnz = self.values.len();
        let mut b = Vec::with_capacity(parts + 1);
        b.push(0);
        for k in 1..parts {
            let target = nnz * k / parts;
            let r = self
                .row_ptr
                .partition_point(|p| p.idx() < target)
                .min(self.rows);
            b.push(r.max(*b.last().unwrap()));
        }
        b.push(self.rows);
        b
    }

    /// Row blocks of about [`BLOCK_NNZ`] nonzeros each, for cache reuse across tokens.
    fn cache_blocks(&self) -> Vec<usize> {
        let parts = self.values.len().div_ceil(BLOCK_NNZ).max(1);
        self.split_by_nnz(parts)
    }
}

/// Dispatches once on the row-pointer width so that `$body` is compiled for each.
macro_rules! with_csr {
    ($w:expr, |$c:ident| $body:expr) => {
        match $w.row_ptr() {
            RowPtr::U32(p) => {
                let $c = Csr {
                    values: $w.values(),
                    col_idx: $w.col_idx(),
                    row_ptr: p,
                    rows: $w.rows(),
                };
                $body
            }
            RowPtr::U64(p) => {
                let $c = Csr {
                    values: $w.values(),
                    col_idx: $w.col_idx(),
                    row_ptr: p,
                    rows: $w.rows(),
                };
                $body
            }
        }
    };
}

fn check_len(what: &'static str, a: usize, b: usize, got: usize) -> Result<(), CsrError> {
    let expected = a.checked_mul(b).ok_or(CsrError::SizeOverflow { what })?;
    if got != expected {
        return Err(CsrError::ShapeMismatch {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Four independent accumulators: the gathers cannot be vectorised, so the latency of a
/// single serial add chain would otherwise be the bottleneck.
#[inline(always)]
fn gather_dot(vals: &[f32], cols: &[u32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let vc = vals.chunks_exact(4);
    let cc = cols.chunks_exact(4);
    let (vr, cr) = (vc.remainder(), cc.remainder());
    for (v, c) in vc.zip(cc) {
        acc[0] += v[0] * x[c[0] as usize];
        acc[1] += v[1] * x[c[1] as usize];
        acc[2] += v[2] * x[c[2] as usize];
        acc[3] += v[3] * x[c[3] as usize];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (v, c) in vr.iter().zip(cr) {
        s += v * x[*c as usize];
    }
    s
}

#[inline(always)]
fn scatter_axpy(a: f32, vals: &[f32], cols: &[u32], y: &mut [f32]) {
    for (v, c) in vals.iter().zip(cols) {
        y[*c as usize] += a * v;
    }
}

/// Splits `buf` (laid out as `(rows, stride)`) at the given row boundaries.
fn split_rows_mut<'b>(
    mut buf: &'b mut [f32],
    bounds: &[usize],
    stride: usize,
) -> Vec<&'b mut [f32]> {
    let mut parts = Vec::with_capacity(bounds.len().saturating_sub(1));
    for w in bounds.windows(2) {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut((w[1] - w[0]) * stride);
        parts.push(head);
        buf = tail;
    }
    parts
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Tokens per task in the token-parallel paths: two tasks per thread so that a thread
/// delayed by other work does not hold up the whole call, while keeping blocks large enough
/// that each W row block is reused by several tokens.
fn token_block(t: usize, threads: usize) -> usize {
    t.div_ceil(2 * threads).max(1)
}

/// Computes `out = x · Wᵀ`, the forward pass of a Linear layer whose weight `W` is stored
/// `(out_features, in_features)` = `(w.rows(), w.cols())`.
///
/// Shapes (row-major): `x` is `(t, w.cols())`, `out` is `(t, w.rows())`; `out` is overwritten.
/// Returns [`CsrError::ShapeMismatch`] if a buffer length does not match.
///
/// Parallel over blocks of tokens when there are many tokens, over nnz-balanced blocks of
/// output rows when there are few (including `t == 1`), and serial for small problems.
pub fn csr_matmul_xwt(x: &[f32], t: usize, w: &CsrView, out: &mut [f32]) -> Result<(), CsrError> {
    let (rows, cols) = (w.rows(), w.cols());
    check_len("x (t * cols)", t, cols, x.len())?;
    check_len("out (t * rows)", t, rows, out.len())?;
    if t == 0 || rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        out.fill(0.0);
        return Ok(());
    }
    with_csr!(w, |w| xwt_dispatch(&w, x, t, cols, out));
    Ok(())
}

fn xwt_dispatch<P: PtrInt>(w: &Csr<P>, x: &[f32], t: usize, cols: usize, out: &mut [f32]) {
    let rows = w.rows;
    let threads = threads();
    let work = (w.values.len() + rows).saturating_mul(t);
    if threads == 1 || work < PAR_MIN_WORK {
        xwt_tokens(w, x, cols, out, &w.cache_blocks());
    } else if t >= 4 * threads {
        let blocks = w.cache_blocks();
        let tb = token_block(t, threads);
        x.par_chunks(tb * cols)
            .zip(out.par_chunks_mut(tb * rows))
            .for_each(|(xb, ob)| xwt_tokens(w, xb, cols, ob, &blocks));
    } else {
        // Few tokens: split W's rows instead. Each task reads its W rows once and applies each
        // row to all t tokens while it is hot, writing into a (rows, t) buffer so that task
        // outputs are contiguous and disjoint; for t == 1 that layout is `out` itself.
        let bounds = w.split_by_nnz(threads * 4);
        let mut tmp_owned = if t == 1 {
            Vec::new()
        } else {
            vec![0.0f32; rows * t]
        };
        let tmp: &mut [f32] = if t == 1 { &mut *out } else { &mut tmp_owned };
        split_rows_mut(tmp, &bounds, t)
            .into_par_iter()
            .zip(bounds.par_windows(2))
            .for_each(|(ob, b)| {
                for (r, o) in (b[0]..b[1]).zip(ob.chunks_exact_mut(t)) {
                    let (v, c) = w.row(r);
                    for (tok, o) in o.iter_mut().enumerate() {
                        *o = gather_dot(v, c, &x[tok * cols..(tok + 1) * cols]);
                    }
                }
            });
        if t > 1 {
            for (r, src) in tmp_owned.chunks_exact(t).enumerate() {
                for (tok, &v) in src.iter().enumerate() {
                    out[tok * rows + r] = v;
                }
            }
        }
    }
}

/// Serial `out = x · Wᵀ` for a block of tokens, walking W in cache-sized row blocks so each
/// block is reused by every token before moving on.
fn xwt_tokens<P: PtrInt>(w: &Csr<P>, x: &[f32], cols: usize, out: &mut [f32], blocks: &[usize]) {
    for b in blocks.windows(2) {
        for (xrow, orow) in x.chunks_exact(cols).zip(out.chunks_exact_mut(w.rows)) {
            for (r, o) in (b[0]..b[1]).zip(&mut orow[b[0]..b[1]]) {
                let (v, c) = w.row(r);
                *o = gather_dot(v, c, xrow);
            }
        }
    }
}

/// Computes `gx = gy · W`, the input gradient of `y = x · Wᵀ`.
///
/// Shapes (row-major): `gy` is `(t, w.rows())`, `gx` is `(t, w.cols())`; `gx` is overwritten.
/// Returns [`CsrError::ShapeMismatch`] if a buffer length does not match.
///
/// Parallel over blocks of tokens, each task owning disjoint `gx` rows so no atomics are
/// needed. When there are too few tokens to occupy the threads but W is dense enough, W's rows
/// are split instead and per-thread partial `gx` buffers are summed.
pub fn csr_matmul_grad_input(
    gy: &[f32],
    t: usize,
    w: &CsrView,
    gx: &mut [f32],
) -> Result<(), CsrError> {
    let (rows, cols) = (w.rows(), w.cols());
    check_len("gy (t * rows)", t, rows, gy.len())?;
    check_len("gx (t * cols)", t, cols, gx.len())?;
    if t == 0 || cols == 0 {
        return Ok(());
    }
    if rows == 0 {
        gx.fill(0.0);
        return Ok(());
    }
    with_csr!(w, |w| grad_dispatch(&w, gy, t, cols, gx));
    Ok(())
}

fn grad_dispatch<P: PtrInt>(w: &Csr<P>, gy: &[f32], t: usize, cols: usize, gx: &mut [f32]) {
    let rows = w.rows;
    let nnz = w.values.len();
    let threads = threads();
    let work = (nnz + rows + cols).saturating_mul(t);
    if threads == 1 || work < PAR_MIN_WORK {
        grad_tokens(w, gy, cols, gx, &w.cache_blocks());
    } else if t >= 4 * threads || nnz < 4 * threads * cols {
        // The row-split path costs an extra `threads * t * cols` for zeroing and summing the
        // partial buffers; it is only worth it when that is small next to the nnz work.
        let blocks = w.cache_blocks();
        let tb = token_block(t, threads);
        gy.par_chunks(tb * rows)
            .zip(gx.par_chunks_mut(tb * cols))
            .for_each(|(gyb, gxb)| grad_tokens(w, gyb, cols, gxb, &blocks));
    } else {
        let bounds = w.split_by_nnz(threads);
        let partial = bounds
            .par_windows(2)
            .map(|b| {
                let mut acc = vec![0.0f32; t * cols];
                for (gyrow, accrow) in gy.chunks_exact(rows).zip(acc.chunks_exact_mut(cols)) {
                    for (r, &g) in (b[0]..b[1]).zip(&gyrow[b[0]..b[1]]) {
                        let (v, c) = w.row(r);
                        scatter_axpy(g, v, c, accrow);
                    }
                }
                acc
            })
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            });
        match partial {
            Some(p) => gx.copy_from_slice(&p),
            None => gx.fill(0.0),
        }
    }
}

/// Serial `gx = gy · W` for a block of tokens, W walked in cache-sized row blocks.
fn grad_tokens<P: PtrInt>(w: &Csr<P>, gy: &[f32], cols: usize, gx: &mut [f32], blocks: &[usize]) {
    gx.fill(0.0);
    for b in blocks.windows(2) {
        for (gyrow, gxrow) in gy.chunks_exact(w.rows).zip(gx.chunks_exact_mut(cols)) {
            for (r, &g) in (b[0]..b[1]).zip(&gyrow[b[0]..b[1]]) {
                let (v, c) = w.row(r);
                scatter_axpy(g, v, c, gxrow);
            }
        }
    }
}
