//! CSR storage: a validated borrowed view and an owned, Vec-backed matrix.

use thiserror::Error;

/// What is wrong with a CSR matrix or with the shapes passed to a kernel.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CsrError {
    /// `row_ptr` does not have `rows + 1` entries.
    #[error("row_ptr has {got} entries, expected rows + 1 = {expected}")]
    RowPtrLength {
        /// Entries found in `row_ptr`.
        got: usize,
        /// Entries required: `rows + 1`.
        expected: usize,
    },
    /// `row_ptr` does not start at 0.
    #[error("row_ptr[0] is {got}, expected 0")]
    RowPtrStart {
        /// The value found in `row_ptr[0]`.
        got: u64,
    },
    /// Some row ends before it starts.
    #[error("row_ptr is not monotone: row_ptr[{row}] = {start} > row_ptr[{}] = {end}", row + 1)]
    RowPtrNotMonotone {
        /// The first row whose pointers decrease.
        row: usize,
        /// `row_ptr[row]`.
        start: u64,
        /// `row_ptr[row + 1]`, smaller than `start`.
        end: u64,
    },
    /// The last row pointer disagrees with the number of stored values.
    #[error("row_ptr ends at {last}, but there are {nnz} stored nonzeros")]
    RowPtrEnd {
        /// The last entry of `row_ptr`.
        last: u64,
        /// Length of `values` (and of `col_idx`).
        nnz: usize,
    },
    /// `values` and `col_idx` differ in length; they must pair up one to one.
    #[error("values has {values} entries but col_idx has {col_idx}")]
    ValuesColIdxLength {
        /// Length of `values`.
        values: usize,
        /// Length of `col_idx`.
        col_idx: usize,
    },
    /// A stored column index is not below the matrix's column count.
    #[error("col_idx[{pos}] = {col} (row {row}) is out of range for {cols} columns")]
    ColumnOutOfRange {
        /// Position of the bad index in `col_idx`.
        pos: usize,
        /// The row that position belongs to.
        row: usize,
        /// The column index found.
        col: u32,
        /// The matrix's column count.
        cols: usize,
    },
    /// The column count cannot be addressed by the u32 `col_idx`.
    #[error("{cols} columns do not fit in u32 column indices")]
    TooManyColumns {
        /// The requested column count.
        cols: usize,
    },
    /// A buffer passed to a kernel has the wrong number of elements for the stated shape.
    #[error("{what}: expected {expected} elements, got {got}")]
    ShapeMismatch {
        /// Which buffer (e.g. `"x"`, `"out"`), for the message.
        what: &'static str,
        /// Elements the shape requires.
        expected: usize,
        /// Elements the buffer holds.
        got: usize,
    },
    /// A product of dimensions does not fit in `usize`.
    #[error("{what}: element count overflows usize")]
    SizeOverflow {
        /// Which size overflowed, for the message.
        what: &'static str,
    },
}

/// Row pointers of a CSR matrix, in whichever integer width the producer chose.
///
/// u32 halves the memory of `row_ptr` and matches most on-disk formats; u64 is needed once a
/// matrix holds more than `u32::MAX` nonzeros. Keeping both borrowed avoids a copy when the
/// data comes straight from a memory map.
#[derive(Debug, Clone, Copy)]
pub enum RowPtr<'a> {
    /// 32-bit row pointers: at most `u32::MAX` nonzeros.
    U32(&'a [u32]),
    /// 64-bit row pointers, for matrices with more nonzeros than u32 can count.
    U64(&'a [u64]),
}

impl RowPtr<'_> {
    /// Number of entries, `rows + 1` for a valid matrix.
    pub fn len(&self) -> usize {
        match self {
            RowPtr::U32(p) => p.len(),
            RowPtr::U64(p) => p.len(),
        }
    }

    /// Whether there are no entries at all (never true of a valid matrix, which has at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i` widened to u64. Panics if `i` is out of bounds, like slice indexing.
    pub fn get(&self, i: usize) -> u64 {
        match self {
            RowPtr::U32(p) => u64::from(p[i]),
            RowPtr::U64(p) => p[i],
        }
    }
}

impl<'a> From<&'a [u32]> for RowPtr<'a> {
    fn from(p: &'a [u32]) -> Self {
        RowPtr::U32(p)
    }
}

impl<'a> From<&'a [u64]> for RowPtr<'a> {
    fn from(p: &'a [u64]) -> Self {
        RowPtr::U64(p)
    }
}

/// A validated, borrowed CSR matrix `W` of shape `(rows, cols)`.
///
/// Fields are private so that a `CsrView` can only be obtained through [`CsrView::new`]; the
/// kernels rely on the invariants it checks (every `row_ptr` entry fits in usize and is at
/// most `nnz`, every column index is `< cols`).
#[derive(Debug, Clone, Copy)]
pub struct CsrView<'a> {
    values: &'a [f32],
    col_idx: &'a [u32],
    row_ptr: RowPtr<'a>,
    rows: usize,
    cols: usize,
}

impl<'a> CsrView<'a> {
    /// Validates and wraps CSR data for a `(rows, cols)` matrix.
    ///
    /// Requires `row_ptr.len() == rows + 1`, `row_ptr[0] == 0`, `row_ptr` non-decreasing,
    /// `row_ptr[rows] == values.len() == col_idx.len()` and every column index `< cols`.
    /// Column indices within a row need not be sorted; duplicates are summed.
    pub fn new(
        values: &'a [f32],
        col_idx: &'a [u32],
        row_ptr: impl Into<RowPtr<'a>>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, CsrError> {
        let row_ptr = row_ptr.into();
        if values.len() != col_idx.len() {
            return Err(CsrError::ValuesColIdxLength {
                values: values.len(),
                col_idx: col_idx.len(),
            });
        }
        let expected = rows.checked_add(1).ok_or(CsrError::SizeOverflow { what: "rows + 1" })?;
        if row_ptr.len() != expected {
            return Err(CsrError::RowPtrLength {
                got: row_ptr.len(),
                expected,
            });
        }
        let first = row_ptr.get(0);
        if first != 0 {
            return Err(CsrError::RowPtrStart { got: first });
        }
        let nnz = values.len();
        let mut prev = 0u64;
        for row in 0..rows {
            let end = row_ptr.get(row + 1);
            if end < prev {
                return Err(CsrError::RowPtrNotMonotone { row, start: prev, end });
            }
            // Checked per row (not only at the end) so that the column check below can
            // slice col_idx without panicking.
            if end > nnz as u64 {
                return Err(CsrError::RowPtrEnd { last: end, nnz });
            }
            let (s, e) = (prev as usize, end as usize);
            if let Some(off) = col_idx[s..e].iter().position(|&c| c as usize >= cols) {
                return Err(CsrError::ColumnOutOfRange {
                    pos: s + off,
                    row,
                    col: col_idx[s + off],
                    cols,
                });
            }
            prev = end;
        }
        if prev != nnz as u64 {
            return Err(CsrError::RowPtrEnd { last: prev, nnz });
        }
        Ok(Self {
            values,
            col_idx,
            row_ptr,
            rows,
            cols,
        })
    }

    /// Wraps CSR data that the caller has already validated with [`CsrView::new`] (for
    /// example once at load time), so per-call construction is O(1) instead of O(nnz).
    ///
    /// This cannot cause undefined behaviour: the kernels index with bounds checks, so data
    /// that breaks the invariants makes them panic or compute garbage rather than return an
    /// error. Debug builds re-validate and panic immediately.
    pub fn new_trusted(
        values: &'a [f32],
        col_idx: &'a [u32],
        row_ptr: impl Into<RowPtr<'a>>,
        rows: usize,
        cols: usize,
    ) -> Self {
        let row_ptr = row_ptr.into();
        if cfg!(debug_assertions) {
            if let Err(e) = Self::new(values, col_idx, row_ptr, rows, cols) {
                panic!("CsrView::new_trusted given invalid data: {e}");
            }
        }
        Self {
            values,
            col_idx,
            row_ptr,
            rows,
            cols,
        }
    }

    /// Number of rows (`out_features` for a Linear weight).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`in_features` for a Linear weight).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The stored values, row by row; `nnz` entries.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// Column of each stored value; `nnz` entries, each below `cols`.
    pub fn col_idx(&self) -> &'a [u32] {
        self.col_idx
    }

    /// Row pointers: row `r` owns positions `row_ptr[r]..row_ptr[r + 1]` of `values`/`col_idx`.
    pub fn row_ptr(&self) -> RowPtr<'a> {
        self.row_ptr
    }

    /// The half-open range of positions in `values`/`col_idx` that belong to `row`.
    pub fn row_range(&self, row: usize) -> std::ops::Range<usize> {
        // Validation guarantees every entry is <= nnz, so the casts are lossless.
        self.row_ptr.get(row) as usize..self.row_ptr.get(row + 1) as usize
    }

    /// Expands to a dense row-major `(rows, cols)` buffer; duplicate entries are summed.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let dst = &mut out[r * self.cols..(r + 1) * self.cols];
            for p in self.row_range(r) {
                dst[self.col_idx[p] as usize] += self.values[p];
            }
        }
        out
    }
}

/// An owned, Vec-backed CSR matrix (u64 row pointers, so any nnz fits).
#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    values: Vec<f32>,
    col_idx: Vec<u32>,
    row_ptr: Vec<u64>,
    rows: usize,
    cols: usize,
}

impl CsrMatrix {
    /// Takes ownership of CSR arrays after validating them exactly like [`CsrView::new`].
    pub fn new(
        values: Vec<f32>,
        col_idx: Vec<u32>,
        row_ptr: Vec<u64>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, CsrError> {
        CsrView::new(&values, &col_idx, row_ptr.as_slice(), rows, cols)?;
        Ok(Self {
            values,
            col_idx,
            row_ptr,
            rows,
            cols,
        })
    }

    /// Builds a CSR matrix from a dense row-major `(rows, cols)` buffer, keeping exactly the
    /// entries that compare unequal to 0.0 (so NaNs are kept and ±0.0 dropped).
    pub fn from_dense(data: &[f32], rows: usize, cols: usize) -> Result<Self, CsrError> {
        let expected = rows.checked_mul(cols).ok_or(CsrError::SizeOverflow {
            what: "dense rows * cols",
        })?;
        if data.len() != expected {
            return Err(CsrError::ShapeMismatch {
                what: "dense data (rows * cols)",
                expected,
                got: data.len(),
            });
        }
        // cols == u32::MAX + 1 would still be representable, but nobody needs it.
        if u32::try_from(cols).is_err() {
            return Err(CsrError::TooManyColumns { cols });
        }
        let nnz = data.iter().filter(|&&v| v != 0.0).count();
        let mut values = Vec::with_capacity(nnz);
        let mut col_idx = Vec::with_capacity(nnz);
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0u64);
        if cols > 0 {
            for row in data.chunks_exact(cols) {
                for (c, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        values.push(v);
                        col_idx.push(c as u32);
                    }
                }
                row_ptr.push(values.len() as u64);
            }
        } else {
            row_ptr.resize(rows + 1, 0);
        }
        Ok(Self {
            values,
            col_idx,
            row_ptr,
            rows,
            cols,
        })
    }

    /// A borrowed view; cheap, and infallible because the data was validated on construction.
    pub fn view(&self) -> CsrView<'_> {
        CsrView {
            values: &self.values,
            col_idx: &self.col_idx,
            row_ptr: RowPtr::U64(&self.row_ptr),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Expands to a dense row-major `(rows, cols)` buffer.
    pub fn to_dense(&self) -> Vec<f32> {
        self.view().to_dense()
    }

    /// Number of rows (`out_features` for a Linear weight).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`in_features` for a Linear weight).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// The stored values, row by row; `nnz` entries.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Column of each stored value; `nnz` entries, each below `cols`.
    pub fn col_idx(&self) -> &[u32] {
        &self.col_idx
    }

    /// Row pointers (`rows + 1` entries): row `r` owns positions `row_ptr[r]..row_ptr[r + 1]`.
    pub fn row_ptr(&self) -> &[u64] {
        &self.row_ptr
    }

    /// Gives back the arrays `(values, col_idx, row_ptr)`.
    pub fn into_parts(self) -> (Vec<f32>, Vec<u32>, Vec<u64>) {
        (self.values, self.col_idx, self.row_ptr)
    }
}
