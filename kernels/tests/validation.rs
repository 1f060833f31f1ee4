//! Malformed CSR data and mismatched buffers are reported as errors, never panics.

use circuitscope_kernels::{csr_matmul_grad_input, csr_matmul_xwt, CsrError, CsrMatrix, CsrView};

// A valid 3x4 matrix: [[1,0,2,0],[0,0,0,0],[0,3,0,4]].
const VALUES: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
const COLS: [u32; 4] = [0, 2, 1, 3];
const PTR32: [u32; 4] = [0, 2, 2, 4];
const PTR64: [u64; 4] = [0, 2, 2, 4];

#[test]
fn valid_views_both_widths() {
    let a = CsrView::new(&VALUES, &COLS, &PTR32[..], 3, 4).unwrap();
    let b = CsrView::new(&VALUES, &COLS, &PTR64[..], 3, 4).unwrap();
    let dense = vec![1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 4.0];
    assert_eq!(a.to_dense(), dense);
    assert_eq!(b.to_dense(), dense);
    assert_eq!((a.rows(), a.cols(), a.nnz()), (3, 4, 4));
    assert_eq!(a.row_range(1), 2..2);
}

#[test]
fn row_ptr_wrong_length() {
    let e = CsrView::new(&VALUES, &COLS, &PTR32[..3], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::RowPtrLength { got: 3, expected: 4 });
    assert!(e.to_string().contains("rows + 1"), "{e}");
}

#[test]
fn row_ptr_not_starting_at_zero() {
    let e = CsrView::new(&VALUES[1..], &COLS[1..], &[1u32, 2, 2, 4][..], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::RowPtrStart { got: 1 });
}

#[test]
fn row_ptr_not_monotone() {
    let e = CsrView::new(&VALUES, &COLS, &[0u64, 3, 2, 4][..], 3, 4).unwrap_err();
    assert_eq!(
        e,
        CsrError::RowPtrNotMonotone {
            row: 1,
            start: 3,
            end: 2
        }
    );
    assert!(e.to_string().contains("not monotone"), "{e}");
}

#[test]
fn row_ptr_end_mismatch() {
    // Too short: last entry below nnz.
    let e = CsrView::new(&VALUES, &COLS, &[0u32, 2, 2, 3][..], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::RowPtrEnd { last: 3, nnz: 4 });
    // Too long: an entry past nnz is caught before it is used to slice.
    let e = CsrView::new(&VALUES, &COLS, &[0u64, 2, 9, 9][..], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::RowPtrEnd { last: 9, nnz: 4 });
    // Huge u64 values must not wrap when narrowed.
    let e = CsrView::new(&VALUES, &COLS, &[0u64, 2, 2, u64::MAX][..], 3, 4).unwrap_err();
    assert!(matches!(e, CsrError::RowPtrEnd { .. }), "{e:?}");
}

#[test]
fn values_col_idx_length_mismatch() {
    let e = CsrView::new(&VALUES[..3], &COLS, &PTR32[..], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::ValuesColIdxLength { values: 3, col_idx: 4 });
}

#[test]
fn column_out_of_range() {
    let e = CsrView::new(&VALUES, &[0u32, 2, 1, 4], &PTR32[..], 3, 4).unwrap_err();
    assert_eq!(
        e,
        CsrError::ColumnOutOfRange {
            pos: 3,
            row: 2,
            col: 4,
            cols: 4
        }
    );
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn owned_new_validates() {
    let e = CsrMatrix::new(VALUES.to_vec(), COLS.to_vec(), vec![0, 2, 2], 3, 4).unwrap_err();
    assert_eq!(e, CsrError::RowPtrLength { got: 3, expected: 4 });
    let m = CsrMatrix::new(VALUES.to_vec(), COLS.to_vec(), PTR64.to_vec(), 3, 4).unwrap();
    assert_eq!(m.nnz(), 4);
}

#[test]
fn from_dense_wrong_length() {
    let e = CsrMatrix::from_dense(&[1.0; 11], 3, 4).unwrap_err();
    assert_eq!(
        e,
        CsrError::ShapeMismatch {
            what: "dense data (rows * cols)",
            expected: 12,
            got: 11
        }
    );
    let e = CsrMatrix::from_dense(&[], usize::MAX, 2).unwrap_err();
    assert!(matches!(e, CsrError::SizeOverflow { .. }), "{e:?}");
}

#[test]
fn from_dense_keeps_exact_nonzeros() {
    let m = CsrMatrix::from_dense(&[0.0, -0.0, 1e-30, f32::NAN, 0.0, -2.0], 2, 3).unwrap();
    assert_eq!(m.col_idx(), &[2, 0, 2]);
    assert_eq!(m.row_ptr(), &[0, 1, 3]);
    assert_eq!(m.values()[0], 1e-30);
    assert!(m.values()[1].is_nan());
}

#[test]
fn kernel_shape_mismatches() {
    let w = CsrView::new(&VALUES, &COLS, &PTR32[..], 3, 4).unwrap();
    let mut out = vec![0.0; 6];
    // x must be (t, cols) = (2, 4).
    let e = csr_matmul_xwt(&[0.0; 7], 2, &w, &mut out).unwrap_err();
    assert_eq!(
        e,
        CsrError::ShapeMismatch {
            what: "x (t * cols)",
            expected: 8,
            got: 7
        }
    );
    // out must be (t, rows) = (2, 3).
    let e = csr_matmul_xwt(&[0.0; 8], 2, &w, &mut out[..5]).unwrap_err();
    assert_eq!(
        e,
        CsrError::ShapeMismatch {
            what: "out (t * rows)",
            expected: 6,
            got: 5
        }
    );
    // gy must be (t, rows), gx (t, cols).
    let mut gx = vec![0.0; 8];
    let e = csr_matmul_grad_input(&[0.0; 8], 2, &w, &mut gx).unwrap_err();
    assert_eq!(
        e,
        CsrError::ShapeMismatch {
            what: "gy (t * rows)",
            expected: 6,
            got: 8
        }
    );
    let e = csr_matmul_grad_input(&[0.0; 6], 2, &w, &mut gx[..3]).unwrap_err();
    assert_eq!(
        e,
        CsrError::ShapeMismatch {
            what: "gx (t * cols)",
            expected: 8,
            got: 3
        }
    );
    // A t so large that t * cols overflows is an error too.
    let e = csr_matmul_xwt(&[], usize::MAX, &w, &mut []).unwrap_err();
    assert!(matches!(e, CsrError::SizeOverflow { .. }), "{e:?}");
}

#[test]
fn errors_are_std_errors() {
    fn takes_error(_: &dyn std::error::Error) {}
    takes_error(&CsrError::TooManyColumns { cols: 1 });
}
