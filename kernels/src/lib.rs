//! CSR sparse × dense CPU kernels for circuitscope.
//!
//! Weight-sparse transformers store each Linear weight `W` (shape `(out_features, in_features)`)
//! in CSR form. The two kernels here are all the engine needs from it: the forward product
//! `y = x · Wᵀ` and the input gradient `gx = gy · W`. Both are multi-threaded with rayon and
//! fall back to a serial loop when the work is too small to pay for task spawning. Beside them: fused causal
//! attention (and its backward), AbsTopK over rows, GELU and RMSNorm, which the inference forward runs.
//!
//! Layout: one folder per op (`attention`, `matmul`, `topk`, `elementwise`), each with `mod.rs` (the public
//! functions, their checks and the choice of instruction set), `portable.rs` (plain Rust, generic over fused
//! multiply-add where that matters), `avx2.rs` (the portable code compiled for AVX2 + FMA) and `avx512.rs`
//! (compiled for AVX-512, and hand-written intrinsics for the hot loops). `isa.rs` is the one run-time CPU
//! feature detection; `fma.rs` and `avx512.rs` hold building blocks the ops share. Benchmarks:
//! `cargo bench -p circuitscope-kernels`.

#![warn(missing_docs)]

mod attention;
mod avx512;
mod csr;
mod elementwise;
mod fma;
mod isa;
mod matmul;
pub mod rng;
mod topk;

pub use attention::{causal_attention, causal_attention_backward, causal_attention_strided, AttentionShape};
pub use csr::{CsrError, CsrMatrix, CsrView, RowPtr};
pub use elementwise::{add_assign, add_row, erf, gelu_erf_inplace, rms_norm_row, rms_norm_rows};
pub use matmul::{csr_matmul_grad_input, csr_matmul_xwt, csr_matmul_xwt_then, rows_then};
pub use rng::SplitMix64;
pub use topk::{abs_topk_rows, abs_topk_rows_inplace, prepare_rows_topk, RowTopK};
