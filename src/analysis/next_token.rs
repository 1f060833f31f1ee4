//! The prediction at the last token: probabilities and the most probable tokens.

/// Softmax of a (V) logit row, computed from its maximum so that large logits do not overflow.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - m).exp()).collect();
    let z: f32 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The `k` most probable token ids with their probabilities, most probable first (ties by id).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|i| (i as u32, probs[i])).collect()
}

/// The most probable token and its probability; (0, 0.0) for an empty row.
pub fn argmax(probs: &[f32]) -> (u32, f32) {
    probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, p)| (i as u32, *p))
        .unwrap_or((0, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1000.0, 999.0, -5.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1] && p[1] > p[2]);
        assert_eq!(top_k(&p, 2).iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(argmax(&p).0, 0);
    }

    #[test]
    fn ties_go_to_the_lower_id() {
        assert_eq!(
            top_k(&[0.25, 0.5, 0.25], 3).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 0, 2]
        );
    }
}
