//! The blocked products' loops in plain Rust, generic over fused multiply-add ([`MulAdd`]) so that the AVX2
//! and AVX-512 builds in the sibling files compile the same loops with FMA; also the per-token gather and
//! scatter loops of the few-token paths.

use super::{Csr, PtrInt};
use crate::fma::MulAdd;

/// Four independent accumulators: the gathers cannot be vectorised, so the latency of a
/// single serial add chain would otherwise be the bottleneck.
#[inline(always)]
pub(super) fn gather_dot(vals: &[f32], cols: &[u32], x: &[f32]) -> f32 {
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
pub(super) fn scatter_axpy(a: f32, vals: &[f32], cols: &[u32], y: &mut [f32]) {
    for (v, c) in vals.iter().zip(cols) {
        y[*c as usize] += a * v;
    }
}

/// Packs tokens `x[t0 .. t0 + nb]` (rows of length `cols`) into `dst`, laid out `(cols, B)`.
/// Lanes `nb..B` are left as they are: they only feed accumulator lanes that are never stored.
///
/// Works in tiles of `PACK_TILE` columns: the tokens' runs of the tile are read into a small buffer, and each
/// column's `B` values are then written as one contiguous run. Writing each token's values straight to their
/// column slots instead touches a different cache line per value.
pub(super) fn pack_tokens<const B: usize>(x: &[f32], cols: usize, dst: &mut [f32]) {
    const PACK_TILE: usize = 16;
    let nb = x.len() / cols;
    let mut tile = [[0f32; PACK_TILE]; B];
    for c0 in (0..cols).step_by(PACK_TILE) {
        let cn = PACK_TILE.min(cols - c0);
        for (b, tr) in tile.iter_mut().take(nb).enumerate() {
            let src = &x[b * cols + c0..b * cols + c0 + cn];
            if cn == PACK_TILE {
                // A fixed-size copy compiles to vector moves rather than a memcpy call.
                *tr = src.try_into().unwrap();
            } else {
                tr[..cn].copy_from_slice(src);
            }
        }
        for (c, d) in dst[c0 * B..(c0 + cn) * B].chunks_exact_mut(B).enumerate() {
            for (dv, tr) in d.iter_mut().zip(&tile).take(nb) {
                *dv = tr[c];
            }
        }
    }
}

/// Output rows per tile in [`xwt_rows`].
const TILE_ROWS: usize = 16;

/// `outs[b][i] = Σ_p W[r0 + i, c_p] · xt[c_p, b]` for rows `r0 .. r0 + outs[b].len()`, where
/// `xt` is one packed `(cols, B)` block and `outs` holds one output slice per valid token.
///
/// Results are gathered in a small transposed tile (`TILE_ROWS` rows × `B` tokens, in L1) and
/// written out as contiguous runs of `TILE_ROWS` floats per token. Storing each row's `B`
/// results straight into `B` different output rows instead is several times slower: those
/// rows are `rows * 4` bytes apart (a multiple of 4 KiB for the model shapes), so they all
/// compete for the same L1 sets.
// Index loops over the fixed-size tile and accumulator are what LLVM vectorises reliably.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(super) fn xwt_rows<P: PtrInt, M: MulAdd, const B: usize>(
    w: &Csr<P>,
    xt: &[f32],
    r0: usize,
    outs: &mut [&mut [f32]],
) {
    let n = outs.first().map_or(0, |o| o.len());
    let mut tile = [[0.0f32; TILE_ROWS]; B];
    for g0 in (0..n).step_by(TILE_ROWS) {
        let gn = TILE_ROWS.min(n - g0);
        for i in 0..gn {
            let (vals, cols) = w.row(r0 + g0 + i);
            let mut acc = [0.0f32; B];
            for (&v, &c) in vals.iter().zip(cols) {
                let xs: &[f32; B] = xt[c as usize * B..][..B].try_into().unwrap();
                for k in 0..B {
                    acc[k] = M::mul_add(v, xs[k], acc[k]);
                }
            }
            for k in 0..B {
                tile[k][i] = acc[k];
            }
        }
        for (o, tr) in outs.iter_mut().zip(&tile) {
            o[g0..g0 + gn].copy_from_slice(&tr[..gn]);
        }
    }
}

/// `gxt[c, :] += Σ_r W[r, c] · gyt[r, :]` over all rows, with `gyt` one packed `(rows, B)`
/// block of `gy` and `gxt` the matching `(cols, B)` block of `gx`: one broadcast and `B / lanes`
/// vector multiply-adds per nonzero.
#[inline(always)]
pub(super) fn grad_rows<P: PtrInt, M: MulAdd, const B: usize>(w: &Csr<P>, gyt: &[f32], gxt: &mut [f32]) {
    for (r, g) in gyt.chunks_exact(B).enumerate().take(w.rows) {
        let g: &[f32; B] = g.try_into().unwrap();
        let (vals, cols) = w.row(r);
        for (&v, &c) in vals.iter().zip(cols) {
            let acc: &mut [f32; B] = (&mut gxt[c as usize * B..][..B]).try_into().unwrap();
            for k in 0..B {
                acc[k] = M::mul_add(v, g[k], acc[k]);
            }
        }
    }
}
