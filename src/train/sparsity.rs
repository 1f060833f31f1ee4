//! Weight sparsity for training (spec G): after every optimiser step keep the top-|w| fraction of every sparse
//! matrix, never leaving a row (a neuron or attention channel) with fewer than `min_per_row` nonzeros.

/// How many entries of `n` a kept fraction keeps (at least one).
pub fn kept_count(n: usize, fraction: f64) -> usize {
    ((n as f64 * fraction).round() as usize).clamp(1, n.max(1))
}

/// Zeroes all but the largest-|w| entries of `w` (rows × cols, row-major): first the `min_per_row` largest of
/// every row are protected, then the largest of the rest fill up to `keep` in total. Returns the mask of kept
/// entries. For a vector (a bias) pass rows = 1.
pub fn sparsify_top_k(w: &mut [f32], rows: usize, cols: usize, keep: usize, min_per_row: usize) -> Vec<bool> {
    debug_assert_eq!(w.len(), rows * cols);
    let mut kept = vec![false; w.len()];
    let per_row = min_per_row.min(cols);
    let mut protected = 0;
    if rows > 1 && per_row > 0 {
        let mut idx: Vec<usize> = Vec::with_capacity(cols);
        for r in 0..rows {
            idx.clear();
            idx.extend(r * cols..(r + 1) * cols);
            idx.select_nth_unstable_by(per_row - 1, |&a, &b| w[b].abs().total_cmp(&w[a].abs()).then(a.cmp(&b)));
            for &i in &idx[..per_row] {
                kept[i] = true;
            }
            protected += per_row;
        }
    }
    let rest = keep.saturating_sub(protected);
    if rest > 0 {
        let mut others: Vec<usize> = (0..w.len()).filter(|&i| !kept[i]).collect();
        if rest < others.len() {
            others.select_nth_unstable_by(rest - 1, |&a, &b| w[b].abs().total_cmp(&w[a].abs()).then(a.cmp(&b)));
            others.truncate(rest);
        }
        for i in others {
            kept[i] = true;
        }
    }
    for (v, k) in w.iter_mut().zip(&kept) {
        if !k {
            *v = 0.0;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fraction_and_row_minimum() {
        // Row 0 has all the large weights; row 1 must still keep 2.
        let mut w = vec![9., 8., 7., 6., 0.1, -0.3, 0.2, 0.05];
        let kept = sparsify_top_k(&mut w, 2, 4, 4, 2);
        assert_eq!(kept.iter().filter(|k| **k).count(), 4);
        assert_eq!(w, vec![9., 8., 0., 0., 0., -0.3, 0.2, 0.]);
    }

    #[test]
    fn vector_and_counts() {
        let mut b = vec![1., -4., 2., 0.5];
        sparsify_top_k(&mut b, 1, 4, 2, 4);
        assert_eq!(b, vec![0., -4., 2., 0.]);
        assert_eq!(kept_count(1000, 1.0 / 8.0), 125);
        assert_eq!(kept_count(3, 0.0001), 1);
    }
}
