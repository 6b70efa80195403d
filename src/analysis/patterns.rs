//! What every attention map attnmap writes satisfies, checked when a map is
//! read back: each weight finite and >= 0, each query row summing to 1.
//!
//! A dump that breaks these was not written by attnmap (or was damaged since);
//! comparing it would give figures that mean nothing, so reading it is an error.

/// Where a set of `[layers, heads, seq, seq]` maps breaks the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternFault {
    /// A weight that is NaN, infinite or negative.
    BadWeight { layer: usize, head: usize, query: usize, key: usize, value: f32 },
    /// A query row whose weights do not sum to 1 within [`row_sum_tolerance`].
    RowSum { layer: usize, head: usize, query: usize, sum: f64, tolerance: f64 },
}

impl std::fmt::Display for PatternFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            PatternFault::BadWeight { layer, head, query, key, value } => {
                let what = if value.is_nan() {
                    "NaN"
                } else if value.is_infinite() {
                    "infinite"
                } else {
                    "negative"
                };
                write!(f, "layer {layer}, head {head}, query {query}, key {key} is {what} ({value}); attention weights are finite and >= 0")
            }
            PatternFault::RowSum { layer, head, query, sum, tolerance } => {
                write!(f, "layer {layer}, head {head}, query row {query} sums to {sum:.9}, not 1 (within {tolerance:.1e}); each row of a softmax sums to 1")
            }
        }
    }
}

/// How far a row of `keys` softmax weights, written as f32, may sum from 1.
///
/// candle's softmax (candle-nn 0.11, ops.rs SoftmaxLastDim) computes
/// e_i = exp(x_i - max) in f32, sums them in f32 (in any order,
/// |S~ - S| <= (n - 1)·u·S with u = 2^-24) and divides each e_i by S~ (one more
/// rounding of u each). The weights then sum to S/S~·(1 + θ), |θ| <= u: within
/// n·u of 1 to first order; exp's own error cancels, since the same e_i are
/// summed and divided. Summing the f32 weights here in f64 adds nothing that
/// matters. The bound allowed is (n + 1)·2^-23, over twice that worst case: never
/// met by rounding, while a row off by 10^-4 is refused up to ~800 keys.
pub fn row_sum_tolerance(keys: usize) -> f64 {
    (keys as f64 + 1.0) * f64::from(f32::EPSILON)
}

/// Check every weight and every row of `[layers, heads, seq, seq]` maps (row-major).
/// Returns the first fault in layer, head, query, key order.
pub fn check_patterns(values: &[f32], layers: usize, heads: usize, seq: usize) -> Result<(), PatternFault> {
    let tolerance = row_sum_tolerance(seq);
    for (row_index, row) in values.chunks(seq.max(1)).enumerate().take(layers * heads * seq) {
        let (layer, head, query) = (row_index / (heads * seq), row_index / seq % heads, row_index % seq);
        let mut sum = 0.0f64;
        for (key, &value) in row.iter().enumerate() {
            if !value.is_finite() || value < 0.0 {
                return Err(PatternFault::BadWeight { layer, head, query, key, value });
            }
            sum += f64::from(value);
        }
        if (sum - 1.0).abs() > tolerance {
            return Err(PatternFault::RowSum { layer, head, query, sum, tolerance });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers x two heads of three tokens, each row a softmax computed in f32.
    fn maps() -> Vec<f32> {
        let mut values = Vec::new();
        for row in 0..12 {
            let logits = [row as f32 * 0.3, 1.0 - row as f32 * 0.1, 0.25];
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            values.extend(exps.iter().map(|e| e * (1.0 / sum)));
        }
        values
    }

    #[test]
    fn softmax_rows_pass() {
        assert_eq!(check_patterns(&maps(), 2, 2, 3), Ok(()));
        // A long f32 softmax row, summed in f32 the slow way, is still within the bound.
        let n = 4096;
        let exps: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 * -0.05).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let row: Vec<f32> = exps.iter().map(|e| e * (1.0 / sum)).collect();
        assert_eq!(check_patterns(&row, 1, 1, n), Ok(()));
    }

    #[test]
    fn bad_cells_are_named() {
        for (value, what) in [(f32::NAN, "NaN"), (f32::INFINITY, "infinite"), (-0.01, "negative")] {
            let mut values = maps();
            // layer 1, head 0, query 2, key 1.
            values[(2 * 3 + 2) * 3 + 1] = value;
            let fault = check_patterns(&values, 2, 2, 3).unwrap_err();
            assert!(matches!(fault, PatternFault::BadWeight { layer: 1, head: 0, query: 2, key: 1, .. }), "{fault:?}");
            assert!(fault.to_string().contains(what), "{fault}");
        }
    }

    #[test]
    fn a_row_off_by_a_little_is_named() {
        let mut values = maps();
        // layer 0, head 1, query 0: scaled by 1 + 1e-4, far above (3 + 1)·2^-23 = 4.8e-7.
        for value in &mut values[9..12] {
            *value *= 1.0001;
        }
        let fault = check_patterns(&values, 2, 2, 3).unwrap_err();
        assert!(matches!(fault, PatternFault::RowSum { layer: 0, head: 1, query: 0, .. }), "{fault:?}");
    }
}
