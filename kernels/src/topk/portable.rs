//! AbsTopK's passes in plain Rust: the threshold predicted from the previous row and narrowed by vectorised
//! counts, the radix-histogram fallback, and the passes that write the kept entries.

use super::{magnitude_bits, Scratch};

const BUCKET_SHIFT: u32 = 21;
const BUCKETS: usize = 1 << (31 - BUCKET_SHIFT);

#[inline(always)]
pub(super) fn topk_row_inplace(row: &mut [f32], k: usize, s: &mut Scratch) {
    let (threshold, above, equal) = kth_largest_magnitude(row, k, s);
    // Entries equal to the threshold survive the first pass; the rare surplus of ties is cleared after it.
    for v in row.iter_mut() {
        let kept = magnitude_bits(*v) >= threshold;
        *v = if kept { *v } else { 0.0 };
    }
    clear_surplus_ties(row, threshold, k - above, equal);
}

/// After a pass that kept every entry equal to the threshold, zeroes those past the first `ties_wanted`.
#[inline(always)]
pub(super) fn clear_surplus_ties(row: &mut [f32], threshold: u32, ties_wanted: usize, equal: usize) {
    if ties_wanted != equal {
        let mut left = ties_wanted;
        for v in row.iter_mut() {
            if magnitude_bits(*v) == threshold {
                if left == 0 {
                    *v = 0.0;
                } else {
                    left -= 1;
                }
            }
        }
    }
}

#[inline(always)]
pub(super) fn topk_row(row: &[f32], out: &mut [f32], k: usize, mask: bool, s: &mut Scratch) {
    let found = kth_largest_magnitude(row, k, s);
    write_topk(row, out, k, mask, found)
}

/// out ← the entries of `row` kept under the threshold search's result `(threshold, above, equal)`.
#[inline(always)]
pub(super) fn write_topk(
    row: &[f32],
    out: &mut [f32],
    k: usize,
    mask: bool,
    (threshold, above, equal): (u32, usize, usize),
) {
    let ties_wanted = k - above;
    // Usually every entry equal to the threshold is kept (typically there is one): a single `>=` pass.
    let cut = if ties_wanted == equal { threshold } else { threshold + 1 };
    for (v, o) in row.iter().zip(out.iter_mut()) {
        let kept = magnitude_bits(*v) >= cut;
        let value = if mask { 1.0 } else { *v };
        *o = if kept { value } else { 0.0 };
    }
    if ties_wanted != equal {
        let mut left = ties_wanted;
        for (v, o) in row.iter().zip(out.iter_mut()) {
            if left == 0 {
                break;
            }
            if magnitude_bits(*v) == threshold {
                *o = if mask { 1.0 } else { *v };
                left -= 1;
            }
        }
    }
}

/// The magnitude bits of the k-th largest |x| (1 ≤ k < len), how many entries lie strictly above it, and how
/// many equal it.
///
/// Rows of one activation have thresholds in nearly the same proportion to their mean |x|, so the previous
/// row's proportion predicts this row's threshold; vectorised counts against a few thresholds around the
/// prediction then narrow it to a handful of candidates. The counts are exact, so a poor prediction only costs
/// time: when the threshold falls outside the bracket, the radix histogram finds it.
#[inline(always)]
pub(super) fn kth_largest_magnitude(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    let scale = mean_abs(row);
    let predicted = s.ratio.and_then(|ratio| kth_predicted(row, k, ratio * scale, s));
    let found = match predicted {
        Some(found) => found,
        None => kth_by_histogram(row, k, s),
    };
    let threshold = f32::from_bits(found.0);
    s.ratio = (scale > 0.0 && threshold > 0.0 && threshold.is_finite()).then(|| threshold / scale);
    found
}

/// Σ|x| / len, in sixteen lanes so that it vectorises (only a prediction depends on its rounding).
#[inline(always)]
pub(super) fn mean_abs(row: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l].abs();
        }
    }
    (acc.iter().sum::<f32>() + rest.iter().map(|v| v.abs()).sum::<f32>()) / row.len() as f32
}

const LANES: usize = 16;

/// Relative offsets of the first pass's thresholds around the predicted one, ascending.
const BRACKET: [f32; 9] = [0.80, 0.90, 0.95, 0.98, 1.0, 1.02, 1.05, 1.10, 1.25];

/// Candidates below which the second counting pass is skipped.
const FEW: usize = 24;

/// Finds the k-th largest magnitude near `guess` (see [`kth_largest_magnitude`]); None when it lies outside
/// the bracket around the guess.
#[inline(always)]
pub(super) fn kth_predicted(row: &[f32], k: usize, guess: f32, s: &mut Scratch) -> Option<(u32, usize, usize)> {
    if !(guess > 0.0 && guess.is_finite()) {
        return None;
    }
    let th: [u32; 9] = BRACKET.map(|f| magnitude_bits(guess * f));
    let counts = count_at_least(row, &th);
    // counts[i] = #(bits ≥ th[i]) falls as i rises; the threshold lies in [th[i], th[i + 1]) when
    // counts[i] ≥ k > counts[i + 1].
    let i = (0..th.len() - 1).find(|&i| counts[i] >= k && counts[i + 1] < k)?;
    let (mut lo, mut hi) = (th[i], th[i + 1]);
    let (mut at_lo, mut at_hi) = (counts[i], counts[i + 1]);
    if at_lo - at_hi > FEW && hi - lo >= 8 {
        let step = (hi - lo) / 8;
        let sub: [u32; 7] = std::array::from_fn(|j| lo + step * (j as u32 + 1));
        let sub_counts = count_at_least(row, &sub);
        for j in 0..7 {
            if sub_counts[j] >= k {
                lo = sub[j];
                at_lo = sub_counts[j];
            } else {
                hi = sub[j];
                at_hi = sub_counts[j];
                break;
            }
        }
    }
    // Gather the magnitudes in [lo, hi); most 16-wide chunks hold none and are skipped.
    s.grow_candidates(row.len());
    let mut n = 0;
    for c in row.chunks(LANES) {
        let mut any = false;
        for v in c {
            let b = magnitude_bits(*v);
            any |= (b >= lo) & (b < hi);
        }
        if any {
            for v in c {
                let b = magnitude_bits(*v);
                s.candidates[n] = b;
                n += ((b >= lo) & (b < hi)) as usize;
            }
        }
    }
    debug_assert_eq!(n, at_lo - at_hi);
    Some(select_kth(&mut s.candidates[..n], k - at_hi, at_hi))
}

/// #(magnitude bits ≥ th[i]) for each threshold, sixteen lanes at a time.
#[inline(always)]
fn count_at_least<const N: usize>(row: &[f32], th: &[u32; N]) -> [usize; N] {
    let mut acc = [[0u32; LANES]; N];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        let b: [u32; LANES] = std::array::from_fn(|l| magnitude_bits(c[l]));
        for (a, &t) in acc.iter_mut().zip(th) {
            for l in 0..LANES {
                a[l] += (b[l] >= t) as u32;
            }
        }
    }
    std::array::from_fn(|i| {
        let tail = rest.iter().filter(|v| magnitude_bits(**v) >= th[i]).count();
        acc[i].iter().map(|&x| x as usize).sum::<usize>() + tail
    })
}

/// The `need`-th largest of `candidates` (1 ≤ need ≤ len), with `above` entries known to lie above all of them:
/// (threshold, entries strictly above it, entries equal to it).
#[inline(always)]
pub(super) fn select_kth(candidates: &mut [u32], need: usize, above: usize) -> (u32, usize, usize) {
    let n = candidates.len();
    let (_, &mut threshold, larger) = candidates.select_nth_unstable(n - need);
    let larger_strict = larger.iter().filter(|&&b| b > threshold).count();
    let equal = candidates.iter().filter(|&&b| b == threshold).count();
    (threshold, above + larger_strict, equal)
}

/// The radix-histogram search: a pass over the exponent and top mantissa bits of |x| finds the bucket that
/// holds the k-th largest magnitude, and a selection runs within that bucket only.
#[inline(always)]
pub(super) fn kth_by_histogram(row: &[f32], k: usize, s: &mut Scratch) -> (u32, usize, usize) {
    // Two interleaved histograms: neighbouring values often share a bucket, and alternating between two
    // counters keeps each increment from waiting on the previous one. The histograms are all zero between calls,
    // and only the buckets between the row's smallest and largest are scanned and cleared again: a row spans a
    // few dozen of the 1,024, and clearing or scanning all of them cost more than a short row's whole search.
    if s.hist.is_empty() {
        s.hist = vec![0; 2 * BUCKETS];
    }
    let (h0, h1) = s.hist.split_at_mut(BUCKETS);
    let (mut lo, mut hi) = (BUCKETS - 1, 0);
    let mut pairs = row.chunks_exact(2);
    for p in &mut pairs {
        let (b0, b1) = (
            (magnitude_bits(p[0]) >> BUCKET_SHIFT) as usize,
            (magnitude_bits(p[1]) >> BUCKET_SHIFT) as usize,
        );
        h0[b0] += 1;
        h1[b1] += 1;
        lo = lo.min(b0).min(b1);
        hi = hi.max(b0).max(b1);
    }
    for v in pairs.remainder() {
        let b = (magnitude_bits(*v) >> BUCKET_SHIFT) as usize;
        h0[b] += 1;
        lo = lo.min(b);
        hi = hi.max(b);
    }
    let count = |b: usize| (h0[b] + h1[b]) as usize;
    let mut above = 0usize;
    let mut bucket = hi;
    while above + count(bucket) < k {
        above += count(bucket);
        bucket -= 1;
    }
    h0[lo..=hi].fill(0);
    h1[lo..=hi].fill(0);
    // Branch-free gather of the bucket's members: always write, advance only on a match.
    s.grow_candidates(row.len());
    let mut n = 0;
    for v in row {
        let b = magnitude_bits(*v);
        s.candidates[n] = b;
        n += ((b >> BUCKET_SHIFT) as usize == bucket) as usize;
    }
    select_kth(&mut s.candidates[..n], k - above, above)
}
