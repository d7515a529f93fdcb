//! Small numeric helpers of the text runtime: pooling, normalisation, softmax.

/// Numerically stable softmax, computed in `f64`. An empty input gives an empty output.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let z: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
    log_softmax_f64(&z)
        .into_iter()
        .map(|v| v.exp() as f32)
        .collect()
}

/// `log softmax(z)`, stable for any finite input.
pub fn log_softmax_f64(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

/// Scales `v` to unit Euclidean length (in `f64`); a zero vector stays zero.
pub fn l2_normalize(v: &[f64]) -> Vec<f32> {
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|a| (a / norm) as f32).collect()
    } else {
        v.iter().map(|&a| a as f32).collect()
    }
}

/// Mean of the first `len` rows of a row-major `[seq, dim]` block: the attention-masked mean
/// (the mask is 1 exactly on the first `len` positions of a right-padded row). `len` is taken
/// as at least 1 and at most the rows present.
pub fn mean_pool(rows: &[f32], dim: usize, len: usize) -> Vec<f64> {
    let mut acc = vec![0.0f64; dim];
    if dim == 0 {
        return acc;
    }
    let len = len.max(1);
    for row in rows.chunks_exact(dim).take(len) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    let rows = (rows.len() / dim).clamp(1, len);
    acc.iter_mut().for_each(|a| *a /= rows as f64);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1001.0, -1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[1] / p[0] - std::f32::consts::E).abs() < 1e-4);
        assert_eq!(p[2], 0.0);
        assert!(softmax(&[]).is_empty());
    }

    #[test]
    fn pooling_and_normalisation() {
        let block = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(mean_pool(&block, 2, 2), vec![2.0, 3.0]);
        let n = l2_normalize(&[3.0, 4.0]);
        assert_eq!(n, vec![0.6, 0.8]);
        assert_eq!(l2_normalize(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
