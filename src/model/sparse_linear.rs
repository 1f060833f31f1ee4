//! Sparse Linear layers: a CSR weight (owned or zero-copy from a memory map) and candle custom
//! ops that compute `x · Wᵀ` with the multi-threaded kernels of `circuitscope-kernels`.
//!
//! Only the input gradient is implemented: circuit analysis differentiates with respect to
//! activations (attribution, patching), never with respect to the frozen weights.

use std::ops::Range;
use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use circuitscope_kernels::{csr_matmul_grad_input, csr_matmul_xwt, CsrError, CsrMatrix, CsrView, RowPtr};
use memmap2::Mmap;

/// Why a [`CsrWeight`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CsrWeightError {
    /// The bytes are fine but not aligned for zero-copy use; copy them into
    /// [`CsrWeight::from_parts`] instead.
    #[error("{what}: byte offset {offset} is not {align}-byte aligned")]
    Misaligned {
        /// Which array (`values`, `col_idx`, `row_ptr`), for the message.
        what: &'static str,
        /// Byte offset of the array in the map.
        offset: usize,
        /// Alignment its element type needs, in bytes.
        align: usize,
    },
    /// The byte length is not a whole number of elements.
    #[error("{what}: byte length {len} is not a multiple of the {size}-byte element size")]
    RaggedLength {
        /// Which array, for the message.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// Size of one element in bytes.
        size: usize,
    },
    /// A byte range does not lie inside the memory map.
    #[error("{what}: byte range {start}..{end} is outside the {map_len}-byte map")]
    OutOfBounds {
        /// Which array, for the message.
        what: &'static str,
        /// First byte of the range.
        start: usize,
        /// One past the last byte of the range.
        end: usize,
        /// Length of the map in bytes.
        map_len: usize,
    },
    /// The target is big-endian, so little-endian file bytes cannot be reinterpreted in place.
    #[error("zero-copy CSR needs a little-endian target")]
    BigEndian,
    /// The arrays are well-placed but do not form a valid CSR matrix.
    #[error("invalid CSR data: {0}")]
    Csr(#[from] CsrError),
}

/// Where the CSR arrays live.
pub enum CsrStore {
    /// Arrays held in memory (converted from another dtype, or built by pruning).
    Owned {
        /// Stored values, row by row.
        values: Vec<f32>,
        /// Column of each stored value.
        col_idx: Vec<u32>,
        /// Row pointers, `rows + 1` entries.
        row_ptr: Vec<u64>,
    },
    /// Byte ranges into a (little-endian) memory map, checked for bounds, alignment and CSR
    /// validity on construction so that viewing them later is free.
    Mapped {
        /// The map that owns the bytes; shared by every weight of the checkpoint.
        mmap: Arc<Mmap>,
        /// Byte range of the f32 values.
        values: Range<usize>,
        /// Byte range of the u32 column indices.
        col_idx: Range<usize>,
        /// Byte range of the row pointers.
        row_ptr: Range<usize>,
        /// Whether the row pointers are u64 (else u32).
        row_ptr_is_u64: bool,
    },
}

/// A validated CSR weight `W` of shape `(rows, cols)` = `(out_features, in_features)`.
pub struct CsrWeight {
    store: CsrStore,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for CsrWeight {
    // The arrays can be hundreds of MB; print only the shape and backing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrWeight")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("nnz", &self.nnz())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

/// Element types for which every bit pattern is a valid value, so reinterpreting bytes as
/// them is sound once alignment and length are right.
trait PlainData: Copy {}
impl PlainData for f32 {}
impl PlainData for u32 {}
impl PlainData for u64 {}

/// Reinterprets `bytes` as a slice of `T`, or `None` if misaligned or of ragged length.
///
/// This is the only `unsafe` in the module. It is sound because: `T: PlainData` has no
/// invalid bit patterns; the pointer is checked to be aligned for `T`; the length in `T`s is
/// `bytes.len() / size_of::<T>()` with no remainder, so the new slice covers exactly the same
/// bytes; and the result borrows `bytes`, so it cannot outlive the memory.
fn cast_slice<T: PlainData>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) || !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: see the function documentation; both preconditions were checked just above.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Checks one byte range of the map and reinterprets it, reporting precisely what is wrong.
fn mapped_slice<'m, T: PlainData>(
    map: &'m [u8],
    range: &Range<usize>,
    what: &'static str,
) -> Result<&'m [T], CsrWeightError> {
    let bytes = map.get(range.clone()).ok_or(CsrWeightError::OutOfBounds {
        what,
        start: range.start,
        end: range.end,
        map_len: map.len(),
    })?;
    let size = std::mem::size_of::<T>();
    if bytes.len() % size != 0 {
        return Err(CsrWeightError::RaggedLength {
            what,
            len: bytes.len(),
            size,
        });
    }
    cast_slice(bytes).ok_or(CsrWeightError::Misaligned {
        what,
        offset: range.start,
        align: std::mem::align_of::<T>(),
    })
}

impl CsrWeight {
    /// Takes ownership of CSR arrays, validating them.
    pub fn from_parts(
        values: Vec<f32>,
        col_idx: Vec<u32>,
        row_ptr: Vec<u64>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, CsrWeightError> {
        CsrView::new(&values, &col_idx, row_ptr.as_slice(), rows, cols)?;
        Ok(Self {
            store: CsrStore::Owned {
                values,
                col_idx,
                row_ptr,
            },
            rows,
            cols,
        })
    }

    /// Takes over an already validated [`CsrMatrix`].
    pub fn from_csr_matrix(m: CsrMatrix) -> Self {
        let (rows, cols) = (m.rows(), m.cols());
        let (values, col_idx, row_ptr) = m.into_parts();
        Self {
            store: CsrStore::Owned {
                values,
                col_idx,
                row_ptr,
            },
            rows,
            cols,
        }
    }

    /// Zero-copy CSR over byte ranges of a little-endian memory map (e.g. safetensors data).
    ///
    /// `values` holds f32, `col_idx` u32 and `row_ptr` u32 or u64 (`row_ptr_is_u64`). Fails
    /// with [`CsrWeightError::Misaligned`] when a range does not start at a multiple of its
    /// element size, in which case the caller should copy the data and use
    /// [`CsrWeight::from_parts`]; every other error means the data itself is bad.
    pub fn from_mmap(
        mmap: Arc<Mmap>,
        values: Range<usize>,
        col_idx: Range<usize>,
        row_ptr: Range<usize>,
        row_ptr_is_u64: bool,
        rows: usize,
        cols: usize,
    ) -> Result<Self, CsrWeightError> {
        if cfg!(target_endian = "big") {
            return Err(CsrWeightError::BigEndian);
        }
        let map: &[u8] = &mmap;
        let v = mapped_slice::<f32>(map, &values, "values")?;
        let c = mapped_slice::<u32>(map, &col_idx, "col_idx")?;
        let p = if row_ptr_is_u64 {
            RowPtr::U64(mapped_slice::<u64>(map, &row_ptr, "row_ptr")?)
        } else {
            RowPtr::U32(mapped_slice::<u32>(map, &row_ptr, "row_ptr")?)
        };
        CsrView::new(v, c, p, rows, cols)?;
        Ok(Self {
            store: CsrStore::Mapped {
                mmap,
                values,
                col_idx,
                row_ptr,
                row_ptr_is_u64,
            },
            rows,
            cols,
        })
    }

    /// Builds an owned CSR weight from a 2-D tensor `(rows, cols)` of any float dtype,
    /// keeping exactly its nonzero entries.
    pub fn from_dense(w: &Tensor) -> candle_core::Result<Self> {
        let (rows, cols) = w.dims2()?;
        let data = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let m = CsrMatrix::from_dense(&data, rows, cols).map_err(candle_core::Error::wrap)?;
        Ok(Self::from_csr_matrix(m))
    }

    /// The dense `(rows, cols)` f32 weight on the CPU.
    pub fn to_dense(&self) -> candle_core::Result<Tensor> {
        Tensor::from_vec(self.view().to_dense(), (self.rows, self.cols), &Device::Cpu)
    }

    /// A borrowed kernel view; O(1), since the data was validated on construction.
    pub fn view(&self) -> CsrView<'_> {
        match &self.store {
            CsrStore::Owned {
                values,
                col_idx,
                row_ptr,
            } => CsrView::new_trusted(values, col_idx, row_ptr.as_slice(), self.rows, self.cols),
            CsrStore::Mapped {
                mmap,
                values,
                col_idx,
                row_ptr,
                row_ptr_is_u64,
            } => {
                let map: &[u8] = mmap;
                // Ranges, alignment and lengths were checked in from_mmap and the map is
                // immutable, so these cannot fail.
                let cast = "CsrWeight: mapped range checked at construction";
                let v = cast_slice::<f32>(&map[values.clone()]).expect(cast);
                let c = cast_slice::<u32>(&map[col_idx.clone()]).expect(cast);
                let p = if *row_ptr_is_u64 {
                    RowPtr::U64(cast_slice::<u64>(&map[row_ptr.clone()]).expect(cast))
                } else {
                    RowPtr::U32(cast_slice::<u32>(&map[row_ptr.clone()]).expect(cast))
                };
                CsrView::new_trusted(v, c, p, self.rows, self.cols)
            }
        }
    }

    /// Number of rows (`out_features`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`in_features`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored nonzeros.
    pub fn nnz(&self) -> usize {
        match &self.store {
            CsrStore::Owned { values, .. } => values.len(),
            CsrStore::Mapped { values, .. } => values.len() / std::mem::size_of::<f32>(),
        }
    }

    /// Fraction of entries that are stored, in `[0, 1]` (0 for an empty shape).
    pub fn density(&self) -> f64 {
        let total = self.rows as f64 * self.cols as f64;
        if total == 0.0 {
            0.0
        } else {
            self.nnz() as f64 / total
        }
    }

    /// Whether the arrays are read straight from a memory map (zero-copy) rather than owned.
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, CsrStore::Mapped { .. })
    }

    /// Where the CSR arrays live, for callers that need the raw storage (e.g. to save it).
    pub fn store(&self) -> &CsrStore {
        &self.store
    }
}

/// The f32 data of a contiguous CPU tensor and its shape, or an error naming `op`.
fn contiguous_f32<'s>(
    op: &'static str,
    s: &'s CpuStorage,
    l: &'s Layout,
) -> candle_core::Result<(&'s [f32], &'s [usize])> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => candle_core::bail!("{op}: expected an f32 tensor, got {:?}", other.dtype()),
    };
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg(format!("{op}: input must be contiguous")))?;
    Ok((&data[start..end], l.shape().dims()))
}

/// Splits `(..., inner)` into the number of leading rows, checking `inner`.
fn leading_rows(op: &'static str, dims: &[usize], inner: usize) -> candle_core::Result<usize> {
    match dims.split_last() {
        Some((&last, lead)) if last == inner => Ok(lead.iter().product()),
        _ => candle_core::bail!("{op}: expected shape (..., {inner}), got {dims:?}"),
    }
}

fn with_last_dim(dims: &[usize], last: usize) -> Shape {
    let mut d = dims.to_vec();
    if let Some(l) = d.last_mut() {
        *l = last;
    }
    Shape::from(d)
}

/// `x · Wᵀ` for f32 `x` of shape `(..., cols)`, giving `(..., rows)`. CPU only.
pub struct CsrLinearOp(pub Arc<CsrWeight>);

impl CustomOp1 for CsrLinearOp {
    fn name(&self) -> &'static str {
        "csr-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        let (x, dims) = contiguous_f32(self.name(), s, l)?;
        let t = leading_rows(self.name(), dims, w.cols())?;
        let mut out = vec![0.0f32; t * w.rows()];
        csr_matmul_xwt(x, t, &w.view(), &mut out).map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), with_last_dim(dims, w.rows())))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let gx = grad_res.contiguous()?.apply_op1(CsrGradInputOp(self.0.clone()))?;
        Ok(Some(gx))
    }
}

/// `gy · W` for f32 `gy` of shape `(..., rows)`, giving `(..., cols)`: the input gradient of
/// [`CsrLinearOp`]. CPU only.
pub struct CsrGradInputOp(pub Arc<CsrWeight>);

impl CustomOp1 for CsrGradInputOp {
    fn name(&self) -> &'static str {
        "csr-linear-grad-input"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        let (gy, dims) = contiguous_f32(self.name(), s, l)?;
        let t = leading_rows(self.name(), dims, w.rows())?;
        let mut gx = vec![0.0f32; t * w.cols()];
        csr_matmul_grad_input(gy, t, &w.view(), &mut gx).map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(gx), with_last_dim(dims, w.cols())))
    }

    /// `gy ↦ gy · W` is linear with transpose `g ↦ g · Wᵀ`, which is the forward op; this
    /// makes second-order gradients through the layer work.
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?.apply_op1(CsrLinearOp(self.0.clone()))?;
        Ok(Some(g))
    }
}

/// `y = x · Wᵀ` for f32 `x` of shape `(..., cols)` on the CPU, giving `(..., rows)`;
/// differentiable with respect to `x` (not `W`).
pub fn csr_linear(x: &Tensor, w: &Arc<CsrWeight>) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(CsrLinearOp(w.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// A (rows, cols) weight with about a third of entries zero and one fully empty row.
    fn sparse_dense(rows: usize, cols: usize) -> Tensor {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let (r, c) = (i / cols, i % cols);
                if r == 1 || (r * 7 + c * 3) % 3 == 0 {
                    0.0
                } else {
                    ((i * 37 % 11) as f32 - 5.0) / 4.0
                }
            })
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }

    fn input(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn forward_matches_dense() -> candle_core::Result<()> {
        let dense = sparse_dense(6, 9);
        let w = Arc::new(CsrWeight::from_dense(&dense)?);
        assert_eq!((w.rows(), w.cols()), (6, 9));
        assert!(w.density() > 0.0 && w.density() < 1.0);
        assert_eq!(max_abs_diff(&w.to_dense()?, &dense), 0.0);

        // 2-D, 3-D, and a non-contiguous (transposed) input.
        let x2 = input(&[5, 9]);
        let want = x2.matmul(&dense.t()?)?;
        assert!(max_abs_diff(&csr_linear(&x2, &w)?, &want) < 1e-5);

        let x3 = input(&[2, 4, 9]);
        let want = x3.broadcast_matmul(&dense.t()?)?;
        assert!(max_abs_diff(&csr_linear(&x3, &w)?, &want) < 1e-5);

        let xt = input(&[9, 3]).t()?;
        let want = xt.contiguous()?.matmul(&dense.t()?)?;
        assert!(max_abs_diff(&csr_linear(&xt, &w)?, &want) < 1e-5);

        // A narrowed view has a nonzero start offset.
        let xn = input(&[6, 9]).narrow(0, 2, 3)?;
        let want = xn.matmul(&dense.t()?)?;
        assert!(max_abs_diff(&csr_linear(&xn, &w)?, &want) < 1e-5);
        Ok(())
    }

    #[test]
    fn shape_and_dtype_errors() -> candle_core::Result<()> {
        let w = Arc::new(CsrWeight::from_dense(&sparse_dense(6, 9))?);
        assert!(csr_linear(&input(&[5, 8]), &w).is_err());
        assert!(csr_linear(&input(&[5, 9]).to_dtype(DType::F64)?, &w).is_err());
        Ok(())
    }

    #[test]
    fn backward_matches_dense() -> candle_core::Result<()> {
        let dense = sparse_dense(7, 5);
        let w = Arc::new(CsrWeight::from_dense(&dense)?);

        let x = Var::from_tensor(&input(&[2, 3, 5]))?;
        let grads = csr_linear(&x, &w)?.sqr()?.sum_all()?.backward()?;
        let g_sparse = grads.get(&x).expect("gradient for x");

        let xd = Var::from_tensor(&input(&[2, 3, 5]))?;
        let grads = xd.broadcast_matmul(&dense.t()?)?.sqr()?.sum_all()?.backward()?;
        let g_dense = grads.get(&xd).expect("gradient for x");

        assert!(max_abs_diff(g_sparse, g_dense) < 1e-4);
        Ok(())
    }

    #[test]
    fn grad_input_op_and_its_backward() -> candle_core::Result<()> {
        let dense = sparse_dense(4, 6);
        let w = Arc::new(CsrWeight::from_dense(&dense)?);
        let gy = Var::from_tensor(&input(&[3, 4]))?;
        let gx = gy.apply_op1(CsrGradInputOp(w.clone()))?;
        assert!(max_abs_diff(&gx, &gy.matmul(&dense)?) < 1e-5);

        let g = gx.sqr()?.sum_all()?.backward()?;
        let gyd = Var::from_tensor(&input(&[3, 4]))?;
        let gd = gyd.matmul(&dense)?.sqr()?.sum_all()?.backward()?;
        assert!(max_abs_diff(g.get(&gy).unwrap(), gd.get(&gyd).unwrap()) < 1e-4);
        Ok(())
    }

    /// Lays `values`, `col_idx` and `row_ptr` out in an anonymous map at byte offset `pad`
    /// (each array 8-byte aligned relative to `pad`) and returns the map and the ranges.
    fn mapped(m: &CsrMatrix, pad: usize, u64_ptr: bool) -> (Arc<Mmap>, [Range<usize>; 3]) {
        let mut bytes = vec![0u8; pad];
        let mut push = |b: Vec<u8>| {
            while !(bytes.len() - pad).is_multiple_of(8) {
                bytes.push(0);
            }
            let start = bytes.len();
            bytes.extend_from_slice(&b);
            start..bytes.len()
        };
        let v = push(m.values().iter().flat_map(|x| x.to_le_bytes()).collect());
        let c = push(m.col_idx().iter().flat_map(|x| x.to_le_bytes()).collect());
        let p = if u64_ptr {
            push(m.row_ptr().iter().flat_map(|x| x.to_le_bytes()).collect())
        } else {
            push(m.row_ptr().iter().flat_map(|&x| (x as u32).to_le_bytes()).collect())
        };
        let mut mm = memmap2::MmapMut::map_anon(bytes.len().max(1)).unwrap();
        mm[..bytes.len()].copy_from_slice(&bytes);
        (Arc::new(mm.make_read_only().unwrap()), [v, c, p])
    }

    #[test]
    fn mapped_weight_matches_owned() -> candle_core::Result<()> {
        let dense = sparse_dense(6, 9);
        let data = dense.flatten_all()?.to_vec1::<f32>()?;
        let m = CsrMatrix::from_dense(&data, 6, 9).unwrap();
        let x = input(&[4, 9]);
        let want = x.matmul(&dense.t()?)?;
        for u64_ptr in [false, true] {
            let (map, [v, c, p]) = mapped(&m, 0, u64_ptr);
            let w = Arc::new(CsrWeight::from_mmap(map, v, c, p, u64_ptr, 6, 9).unwrap());
            assert!(w.is_mapped());
            assert_eq!(w.nnz(), m.nnz());
            assert_eq!(max_abs_diff(&w.to_dense()?, &dense), 0.0);
            assert!(max_abs_diff(&csr_linear(&x, &w)?, &want) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn mapped_weight_errors() {
        let data = sparse_dense(6, 9).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let m = CsrMatrix::from_dense(&data, 6, 9).unwrap();

        // Shifted by one byte: misaligned, so the caller can fall back to copying.
        let (map, [v, c, p]) = mapped(&m, 1, true);
        let e = CsrWeight::from_mmap(map, v, c, p, true, 6, 9).unwrap_err();
        assert!(matches!(e, CsrWeightError::Misaligned { what: "values", .. }), "{e}");

        let (map, [v, c, p]) = mapped(&m, 0, true);
        let len = map.len();
        let e = CsrWeight::from_mmap(map.clone(), v.clone(), c.clone(), p.start..len + 8, true, 6, 9).unwrap_err();
        assert!(matches!(e, CsrWeightError::OutOfBounds { .. }), "{e}");

        let e = CsrWeight::from_mmap(map.clone(), v.start..v.end - 2, c.clone(), p.clone(), true, 6, 9).unwrap_err();
        assert!(matches!(e, CsrWeightError::RaggedLength { .. }), "{e}");

        // Valid bytes, wrong shape: the CSR validation reports it.
        let e = CsrWeight::from_mmap(map, v, c, p, true, 5, 9).unwrap_err();
        assert!(matches!(e, CsrWeightError::Csr(_)), "{e}");
    }

    #[test]
    fn from_parts_validates() {
        assert!(CsrWeight::from_parts(vec![1.0], vec![3], vec![0, 1], 1, 3).is_err());
        let w = CsrWeight::from_parts(vec![1.0], vec![2], vec![0, 1], 1, 3).unwrap();
        assert_eq!(w.nnz(), 1);
        assert!((w.density() - 1.0 / 3.0).abs() < 1e-12);
    }
}
