//! The two products a sparse Linear layer needs: `x · Wᵀ` (forward) and `gy · W` (input grad).
//!
//! This file holds the public entry points, the choice between per-token and token-blocked paths, the blocking
//! and threading, and the choice of instruction set; the inner loops are in `portable` (generic over fused
//! multiply-add), compiled again in `avx2` and `avx512`, which also has hand-written 16-token tiles.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

#[cfg(target_arch = "x86_64")]
use self::avx2::{grad_rows_avx2, xwt_rows_avx2};
#[cfg(target_arch = "x86_64")]
use self::avx512::{grad_rows_avx512, xwt_rows_avx512};
use self::portable::{gather_dot, grad_rows, pack_tokens, scatter_axpy, xwt_rows};
use crate::fma::Unfused;
use crate::isa::Isa;

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
            let r = self.row_ptr.partition_point(|p| p.idx() < target).min(self.rows);
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
        return Err(CsrError::ShapeMismatch { what, expected, got });
    }
    Ok(())
}

/// Splits `buf` (laid out as `(rows, stride)`) at the given row boundaries.
fn split_rows_mut<'b>(mut buf: &'b mut [f32], bounds: &[usize], stride: usize) -> Vec<&'b mut [f32]> {
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
    xwt_then(x, t, w, out, None)
}

/// [`csr_matmul_xwt`], then `finish(&mut state, i, row)` on every output row i (token i), with `state =
/// init()` made once per task for a contiguous run of tokens (a `RowTopK` that predicts each row's threshold
/// from the one before, say).
///
/// Where the product runs in token blocks (many tokens), each task packs its block, multiplies it and finishes
/// its rows while they are still in cache: one parallel pass where a separate row pass would read every
/// output back from memory and cost a second fork-join. Elsewhere the rows are finished after the product.
pub fn csr_matmul_xwt_then<S, I, F>(
    x: &[f32],
    t: usize,
    w: &CsrView,
    out: &mut [f32],
    init: I,
    finish: F,
) -> Result<(), CsrError>
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize, &mut [f32]) + Sync,
{
    // The row pass goes in as a trait object, so that the product is compiled once, in this crate (optimised even
    // in a debug build), and not again, at the caller's optimisation level, for every caller's closure type.
    let finish = &finish;
    let make = || -> RowFinisher<'_> {
        let mut state = init();
        Box::new(move |i, row| finish(&mut state, i, row))
    };
    xwt_then(x, t, w, out, Some(&make))
}

/// The product, then the row pass if there is one.
fn xwt_then(x: &[f32], t: usize, w: &CsrView, out: &mut [f32], pass: Option<&RowPass>) -> Result<(), CsrError> {
    let (rows, cols) = (w.rows(), w.cols());
    check_len("x (t * cols)", t, cols, x.len())?;
    check_len("out (t * rows)", t, rows, out.len())?;
    if t == 0 || rows == 0 {
        return Ok(());
    }
    if cols == 0 {
        out.fill(0.0);
        if let Some(pass) = pass {
            finish_rows(pass, out, rows, 0);
        }
        return Ok(());
    }
    with_csr!(w, |w| xwt_dispatch(&w, x, t, cols, out, pass));
    Ok(())
}

/// The row pass of [`csr_matmul_xwt_then`] on its own, for a product made elsewhere (a dense matmul):
/// `finish(&mut state, i, row)` on every `width`-wide row i of `out`, in parallel runs of rows with one
/// `state = init()` each.
pub fn rows_then<S, I, F>(out: &mut [f32], width: usize, init: I, finish: F)
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize, &mut [f32]) + Sync,
{
    if width == 0 {
        return;
    }
    let finish = &finish;
    let make = || -> RowFinisher<'_> {
        let mut state = init();
        Box::new(move |i, row| finish(&mut state, i, row))
    };
    finish_rows_parallel(&make, out, width);
}

/// A row pass: called once per task, it returns the function that finishes that task's rows.
type RowPass<'a> = dyn Fn() -> RowFinisher<'a> + Sync + 'a;

/// Finishes one task's rows: `(token, row)`.
type RowFinisher<'a> = Box<dyn FnMut(usize, &mut [f32]) + 'a>;

/// Finishes `out`'s rows (each `width` wide, the first being token `first`) serially, as one task.
fn finish_rows(pass: &RowPass, out: &mut [f32], width: usize, first: usize) {
    let mut finish = pass();
    for (j, row) in out.chunks_exact_mut(width).enumerate() {
        finish(first + j, row);
    }
}

/// Finishes all of `out` in parallel runs of tokens.
fn finish_rows_parallel(pass: &RowPass, out: &mut [f32], width: usize) {
    let t = out.len() / width;
    let per_task = t.div_ceil(4 * threads()).max(1);
    out.par_chunks_mut(per_task * width)
        .enumerate()
        .for_each(|(i, run)| finish_rows(pass, run, width, i * per_task));
}

fn xwt_dispatch<P: PtrInt>(w: &Csr<P>, x: &[f32], t: usize, cols: usize, out: &mut [f32], then: Option<&RowPass>) {
    let rows = w.rows;
    let threads = threads();
    let work = (w.values.len() + rows).saturating_mul(t);
    let parallel = threads > 1 && work >= PAR_MIN_WORK;
    if t >= BLOCKED_MIN_T {
        let isa = Isa::detect();
        match block_tokens(t, w.values.len() / rows) {
            8 => xwt_blocked_then::<P, 8>(w, x, t, cols, out, isa, parallel, then),
            16 => xwt_blocked_then::<P, 16>(w, x, t, cols, out, isa, parallel, then),
            _ => xwt_blocked_then::<P, 32>(w, x, t, cols, out, isa, parallel, then),
        }
        return;
    }
    xwt_few_tokens(w, x, t, cols, out, parallel);
    if let Some(pass) = then {
        finish_rows(pass, out, rows, 0);
    }
}

/// The product for fewer tokens than a block.
fn xwt_few_tokens<P: PtrInt>(w: &Csr<P>, x: &[f32], t: usize, cols: usize, out: &mut [f32], parallel: bool) {
    let rows = w.rows;
    let threads = threads();
    if !parallel {
        xwt_tokens(w, x, cols, out, &w.cache_blocks());
    } else {
        // Few tokens: split W's rows instead. Each task reads its W rows once and applies each
        // row to all t tokens while it is hot, writing into a (rows, t) buffer so that task
        // outputs are contiguous and disjoint; for t == 1 that layout is `out` itself.
        let bounds = w.split_by_nnz(threads * 4);
        let mut tmp_owned = if t == 1 { Vec::new() } else { vec![0.0f32; rows * t] };
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
pub fn csr_matmul_grad_input(gy: &[f32], t: usize, w: &CsrView, gx: &mut [f32]) -> Result<(), CsrError> {
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
    let parallel = threads > 1 && work >= PAR_MIN_WORK;
    let bt = block_tokens(t, nnz / rows);
    if t >= BLOCKED_MIN_T && (!parallel || t.div_ceil(bt) >= threads) {
        let isa = Isa::detect();
        match bt {
            8 => grad_blocked::<P, 8>(w, gy, t, cols, gx, isa, parallel),
            16 => grad_blocked::<P, 16>(w, gy, t, cols, gx, isa, parallel),
            _ => grad_blocked::<P, 32>(w, gy, t, cols, gx, isa, parallel),
        }
    } else if !parallel {
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

// ---------------------------------------------------------------------------------------------
// Token-blocked SIMD path.
//
// For `t >= BLOCKED_MIN_T` tokens, x is packed into blocks of `B` tokens laid out `(cols, B)`,
// so that for one nonzero `W[o, c]` the `B` values `x[t0..t0 + B, c]` are contiguous. Each
// nonzero then costs one broadcast and `B / lanes` vector multiply-adds into a `[f32; B]`
// accumulator that LLVM keeps in registers, instead of `B` scalar gathers. The code is written
// once, generically, and compiled a second time inside `#[target_feature]` functions so that
// the same loops use AVX2+FMA or AVX-512 when the CPU has them (the crate's baseline target is
// SSE2 only); the portable instantiation is the fallback everywhere else.
// ---------------------------------------------------------------------------------------------

/// Below this many tokens the per-token gather loops are used: packing and padding a token
/// block would cost more than it saves.
const BLOCKED_MIN_T: usize = 4;

/// Tokens per packed block for `t` tokens and `nnz_per_row` nonzeros per W row (on average).
///
/// Wider blocks amortise the per-nonzero index and broadcast work over more tokens, but make
/// the per-row result transpose (`B` scalar stores per row) and the packed block (`cols * B`
/// floats, which should stay in L2) bigger. Measured on Zen (AVX-512): 16 is best at ~8-32
/// nonzeros per row, 32 once rows have many nonzeros; 8 avoids padding waste for small `t`.
fn block_tokens(t: usize, nnz_per_row: usize) -> usize {
    if t >= 32 && nnz_per_row >= 64 {
        32
    } else if t >= 12 {
        16
    } else {
        8
    }
}

fn xwt_rows_isa<P: PtrInt, const B: usize>(isa: Isa, w: &Csr<P>, xt: &[f32], r0: usize, outs: &mut [&mut [f32]]) {
    match isa {
        Isa::Portable => xwt_rows::<P, Unfused, B>(w, xt, r0, outs),
        // SAFETY: `Isa::detect` returned these variants only after `is_x86_feature_detected!`
        // confirmed that the running CPU supports every feature the callee is compiled with.
        // The callees keep every access in bounds (indexing is checked, or clamped in `avx512`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { xwt_rows_avx2::<P, B>(w, xt, r0, outs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if B == 16 => unsafe { avx512::xwt_rows16::<P>(w, xt, r0, outs) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { xwt_rows_avx512::<P, B>(w, xt, r0, outs) },
    }
}

#[allow(clippy::too_many_arguments)]
fn xwt_blocked_then<P: PtrInt, const B: usize>(
    w: &Csr<P>,
    x: &[f32],
    t: usize,
    cols: usize,
    out: &mut [f32],
    isa: Isa,
    parallel: bool,
    then: Option<&RowPass>,
) {
    let rows = w.rows;
    let nblk = t.div_ceil(B);
    let blk_len = cols * B;
    let mut xt_buf = ScratchBuf::take(nblk * blk_len);
    let xt: &mut [f32] = &mut xt_buf;
    let pack = |xb: &[f32], dst: &mut [f32]| {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && B.is_multiple_of(16) {
            // SAFETY: `Isa::detect` confirmed AVX-512F on this CPU.
            unsafe { avx512::pack_tokens::<B>(xb, cols, dst) };
            return;
        }
        pack_tokens::<B>(xb, cols, dst)
    };

    // Tasks are (token block, row range) pairs. Split rows only as far as needed to give every
    // thread a couple of tasks: each task re-reads its W rows, but keeps its packed x block hot.
    let threads = threads();
    let row_parts = if parallel {
        (2 * threads).div_ceil(nblk).max(1)
    } else {
        1
    };
    if row_parts == 1 {
        // Every task owns whole token blocks: it packs each, multiplies it and finishes its rows in one go.
        // Runs of consecutive blocks per task, so that a row pass's state carries across blocks.
        let per_task = if parallel { nblk.div_ceil(2 * threads) } else { nblk };
        let task = |i: usize, xs: &[f32], xts: &mut [f32], outs: &mut [f32]| {
            let mut finish = then.map(|pass| pass());
            let blocks = xs
                .chunks(B * cols)
                .zip(xts.chunks_mut(blk_len))
                .zip(outs.chunks_mut(B * rows));
            for (j, ((xb, xtb), ob)) in blocks.enumerate() {
                pack(xb, xtb);
                let mut token_rows: Vec<&mut [f32]> = ob.chunks_mut(rows).collect();
                xwt_rows_isa::<P, B>(isa, w, xtb, 0, &mut token_rows);
                if let Some(finish) = &mut finish {
                    let first = (i * per_task + j) * B;
                    for (k, row) in ob.chunks_exact_mut(rows).enumerate() {
                        finish(first + k, row);
                    }
                }
            }
        };
        let (xs, xts, outs) = (per_task * B * cols, per_task * blk_len, per_task * B * rows);
        if parallel {
            x.par_chunks(xs)
                .zip(xt.par_chunks_mut(xts))
                .zip(out.par_chunks_mut(outs))
                .enumerate()
                .for_each(|(i, ((xs, xts), outs))| task(i, xs, xts, outs));
        } else {
            x.chunks(xs)
                .zip(xt.chunks_mut(xts))
                .zip(out.chunks_mut(outs))
                .enumerate()
                .for_each(|(i, ((xs, xts), outs))| task(i, xs, xts, outs));
        }
        return;
    }

    // Fewer blocks than tasks wanted: pack all blocks first, since tasks share them.
    x.par_chunks(B * cols)
        .zip(xt.par_chunks_mut(blk_len))
        .for_each(|(xb, dst)| pack(xb, dst));
    let bounds = w.split_by_nnz(row_parts);
    let mut tasks: Vec<(usize, usize, Vec<&mut [f32]>)> = Vec::with_capacity(nblk * row_parts);
    for (blk, ob) in out.chunks_mut(B * rows).enumerate() {
        let first = tasks.len();
        for &r0 in &bounds[..row_parts] {
            tasks.push((blk, r0, Vec::with_capacity(B)));
        }
        for orow in ob.chunks_mut(rows) {
            for (k, part) in split_rows_mut(orow, &bounds, 1).into_iter().enumerate() {
                tasks[first + k].2.push(part);
            }
        }
    }
    let xt: &[f32] = xt;
    tasks
        .into_par_iter()
        .for_each(|(blk, r0, mut outs)| xwt_rows_isa::<P, B>(isa, w, &xt[blk * blk_len..][..blk_len], r0, &mut outs));
    if let Some(pass) = then {
        finish_rows_parallel(pass, out, rows);
    }
}

/// Scratch space for packed token blocks, kept per calling thread between calls.
///
/// A fresh multi-megabyte `Vec` per call costs page faults and zeroing comparable to the
/// product itself at model sizes. The buffer is moved out of the thread-local for the duration
/// of a call (so a nested call on the same thread, e.g. from inside a rayon task, simply gets
/// an empty one and allocates) and put back afterwards unless it is larger than
/// [`SCRATCH_KEEP_MAX`].
struct ScratchBuf {
    buf: Vec<f32>,
    len: usize,
}

/// Largest scratch buffer, in floats, kept alive between calls (64 MiB).
const SCRATCH_KEEP_MAX: usize = 16 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

impl ScratchBuf {
    /// A buffer of exactly `len` floats with unspecified (but initialised) contents.
    fn take(len: usize) -> Self {
        let mut buf = SCRATCH.with(|s| s.take());
        // Grown, never truncated: a shorter length would make the next larger call zero the tail again.
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        ScratchBuf { buf, len }
    }
}

impl Drop for ScratchBuf {
    fn drop(&mut self) {
        if self.buf.capacity() <= SCRATCH_KEEP_MAX {
            let v = std::mem::take(&mut self.buf);
            // `try_with` so that a drop during thread teardown does not panic.
            let _ = SCRATCH.try_with(|s| {
                // Keep the larger of the two if a nested call left one behind.
                let prev = s.take();
                s.set(if prev.capacity() > v.capacity() { prev } else { v });
            });
        }
    }
}

impl std::ops::Deref for ScratchBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for ScratchBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

fn grad_rows_isa<P: PtrInt, const B: usize>(isa: Isa, w: &Csr<P>, gyt: &[f32], gxt: &mut [f32]) {
    match isa {
        Isa::Portable => grad_rows::<P, Unfused, B>(w, gyt, gxt),
        // SAFETY: as in `xwt_rows_isa`, these variants come from `Isa::detect` only after run
        // time detection of every feature the callee enables; the callees are safe code.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { grad_rows_avx2::<P, B>(w, gyt, gxt) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { grad_rows_avx512::<P, B>(w, gyt, gxt) },
    }
}

/// Token-blocked `gx = gy · W`: parallel over blocks of `B` tokens, each owning its `gx` rows.
fn grad_blocked<P: PtrInt, const B: usize>(
    w: &Csr<P>,
    gy: &[f32],
    t: usize,
    cols: usize,
    gx: &mut [f32],
    isa: Isa,
    parallel: bool,
) {
    let rows = w.rows;
    let nblk = t.div_ceil(B);
    let blk_len = (rows + cols) * B;
    let mut scratch = ScratchBuf::take(nblk * blk_len);
    let task = |((gyb, gxb), buf): ((&[f32], &mut [f32]), &mut [f32])| {
        let (gyt, gxt) = buf.split_at_mut(rows * B);
        pack_tokens::<B>(gyb, rows, gyt);
        gxt.fill(0.0);
        grad_rows_isa::<P, B>(isa, w, gyt, gxt);
        for (b, gxrow) in gxb.chunks_exact_mut(cols).enumerate() {
            for (o, src) in gxrow.iter_mut().zip(gxt.chunks_exact(B)) {
                *o = src[b];
            }
        }
    };
    if parallel {
        gy.par_chunks(B * rows)
            .zip(gx.par_chunks_mut(B * cols))
            .zip(scratch.par_chunks_mut(blk_len))
            .for_each(task);
    } else {
        gy.chunks(B * rows)
            .zip(gx.chunks_mut(B * cols))
            .zip(scratch.chunks_mut(blk_len))
            .for_each(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction-set variant and block width of the blocked kernels agrees with the
    /// per-token gather loop (the portable variant is otherwise never run on an AVX2 machine).
    #[test]
    fn blocked_variants_match_gather() {
        let (rows, cols, t) = (37usize, 53usize, 21usize);
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let (mut values, mut col_idx, mut row_ptr) = (Vec::new(), Vec::new(), vec![0u32]);
        for _ in 0..rows {
            for c in 0..cols {
                if next() > 0.2 {
                    values.push(next());
                    col_idx.push(c as u32);
                }
            }
            row_ptr.push(values.len() as u32);
        }
        let x: Vec<f32> = (0..t * cols).map(|_| next()).collect();
        let gy: Vec<f32> = (0..t * rows).map(|_| next()).collect();
        let w = Csr {
            values: &values,
            col_idx: &col_idx,
            row_ptr: &row_ptr,
            rows,
        };
        let mut want = vec![0.0f32; t * rows];
        xwt_tokens(&w, &x, cols, &mut want, &[0, rows]);
        let mut want_g = vec![0.0f32; t * cols];
        grad_tokens(&w, &gy, cols, &mut want_g, &[0, rows]);

        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let d = Isa::detect();
            if d != Isa::Portable {
                isas.push(Isa::Avx2Fma);
            }
            if d == Isa::Avx512 {
                isas.push(Isa::Avx512);
            }
        }
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-4);
        for isa in isas {
            for parallel in [false, true] {
                let mut got = vec![f32::NAN; t * rows];
                xwt_blocked_then::<u32, 8>(&w, &x, t, cols, &mut got, isa, parallel, None);
                assert!(close(&got, &want), "xwt B=8 {isa:?}");
                xwt_blocked_then::<u32, 16>(&w, &x, t, cols, &mut got, isa, parallel, None);
                assert!(close(&got, &want), "xwt B=16 {isa:?}");
                xwt_blocked_then::<u32, 32>(&w, &x, t, cols, &mut got, isa, parallel, None);
                assert!(close(&got, &want), "xwt B=32 {isa:?}");

                let mut got = vec![f32::NAN; t * cols];
                grad_blocked::<u32, 8>(&w, &gy, t, cols, &mut got, isa, parallel);
                assert!(close(&got, &want_g), "grad B=8 {isa:?}");
                grad_blocked::<u32, 16>(&w, &gy, t, cols, &mut got, isa, parallel);
                assert!(close(&got, &want_g), "grad B=16 {isa:?}");
                grad_blocked::<u32, 32>(&w, &gy, t, cols, &mut got, isa, parallel);
                assert!(close(&got, &want_g), "grad B=32 {isa:?}");
            }
        }
    }
}
