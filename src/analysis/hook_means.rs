//! Per-hook channel means over a set of recorded runs: the mean ablation used when a model has no scan.

use std::collections::BTreeMap;

use super::recording::Recorded;

/// The mean of every recorded hook's channels over every token of `runs` (accumulated in f64).
pub fn mean_over_tokens<'a>(runs: impl IntoIterator<Item = &'a Recorded>) -> BTreeMap<String, Vec<f32>> {
    let mut sums: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    for r in runs {
        for (name, (w, v)) in &r.hooks {
            let e = sums.entry(name.clone()).or_insert_with(|| (0, vec![0.0; *w]));
            for row in v.chunks(*w) {
                e.0 += 1;
                for (s, x) in e.1.iter_mut().zip(row) {
                    *s += *x as f64;
                }
            }
        }
    }
    sums.into_iter()
        .map(|(k, (n, s))| (k, s.iter().map(|x| (x / n.max(1) as f64) as f32).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_every_token_of_every_run() {
        let run = |vals: Vec<f32>| Recorded {
            ids: vec![0; vals.len() / 2],
            last_logits: vec![],
            hooks: BTreeMap::from([("0.attn.q".to_string(), (2, vals))]),
            patterns: BTreeMap::new(),
        };
        let a = run(vec![1.0, 2.0, 3.0, 4.0]);
        let b = run(vec![5.0, 6.0]);
        let m = mean_over_tokens([&a, &b]);
        assert_eq!(m["0.attn.q"], vec![3.0, 4.0]);
    }
}
