//! Value scales and masks: which numbers get which colour, and which cells get none.

use super::RenderError;

/// How values map onto the colormap: `min` gets its first colour, `max` its last,
/// values outside are clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Range { min: f32, max: f32 },
}

impl Default for Scale {
    fn default() -> Self {
        Scale::Range { min: 0.0, max: 1.0 }
    }
}

impl Scale {
    /// `0..max` of the finite values: what attention weights (all >= 0) use, so
    /// the darkest colour always means "no attention".
    ///
    /// When nothing is above zero (an all-zero map) the range is `0..1`, which
    /// still shows every cell at the low end instead of dividing by zero.
    pub fn zero_to_max(values: &[f32]) -> Scale {
        Self::zero_to_max_of(values.iter().copied())
    }

    pub(super) fn zero_to_max_of(values: impl Iterator<Item = f32>) -> Scale {
        let max = values.filter(|v| v.is_finite()).fold(0.0_f32, f32::max);
        Scale::Range {
            min: 0.0,
            max: if max > 0.0 { max } else { 1.0 },
        }
    }

    /// `-m..m` with `m` the largest finite magnitude: for differences, so zero
    /// sits at the centre of a diverging colormap. All zeros give `-1..1`.
    pub fn symmetric(values: &[f32]) -> Scale {
        Self::symmetric_of(values.iter().copied())
    }

    pub(super) fn symmetric_of(values: impl Iterator<Item = f32>) -> Scale {
        let magnitude = values
            .filter(|v| v.is_finite())
            .fold(0.0_f32, |acc, v| acc.max(v.abs()));
        let m = if magnitude > 0.0 { magnitude } else { 1.0 };
        Scale::Range { min: -m, max: m }
    }

    pub fn min(&self) -> f32 {
        match *self {
            Scale::Range { min, .. } => min,
        }
    }

    pub fn max(&self) -> f32 {
        match *self {
            Scale::Range { max, .. } => max,
        }
    }

    /// Where `value` falls in the range, as `t` in [0, 1] for [`super::Colormap::rgb`].
    /// A zero-width range puts everything at its middle rather than dividing by zero.
    pub fn normalise(&self, value: f32) -> f32 {
        let (min, max) = (self.min(), self.max());
        let span = max - min;
        if span > 0.0 {
            ((value - min) / span).clamp(0.0, 1.0)
        } else if value < min {
            0.0
        } else if value > max {
            1.0
        } else {
            0.5
        }
    }

    pub(super) fn validate(&self) -> Result<(), RenderError> {
        let (min, max) = (self.min(), self.max());
        if min.is_finite() && max.is_finite() && min <= max {
            Ok(())
        } else {
            Err(RenderError::InvalidScale { min, max })
        }
    }

    /// Colour bar ticks: round values ("nice" steps of 1, 2, 2.5 or 5 times a
    /// power of ten, at most five of them) with their labels, as `(t, label)`.
    pub(super) fn ticks(&self) -> Vec<(f32, String)> {
        let (min, max) = (self.min(), self.max());
        let span = max - min;
        if span <= 0.0 || !span.is_finite() {
            return vec![(0.5, format_tick(min, 2))];
        }
        let mut magnitude = 10f64.powf((f64::from(span) / 5.0).log10().floor());
        loop {
            for factor in [1.0, 2.0, 2.5, 5.0] {
                let step = factor * magnitude;
                // Integer multiples of the step, so ticks never drift from round values.
                let first = (f64::from(min) / step - 1e-6).ceil() as i64;
                let last = (f64::from(max) / step + 1e-6).floor() as i64;
                if last - first < 5 {
                    let decimals = decimals_for(step);
                    return (first..=last)
                        .map(|i| {
                            let value = i as f64 * step;
                            let t = ((value - f64::from(min)) / f64::from(span)).clamp(0.0, 1.0);
                            (t as f32, format_tick(value as f32, decimals))
                        })
                        .collect();
                }
            }
            magnitude *= 10.0;
        }
    }
}

/// The fewest decimals that write every multiple of `step` exactly (0.25 -> 2).
fn decimals_for(step: f64) -> usize {
    (0..6)
        .find(|&decimals| {
            let scaled = step * 10f64.powi(decimals as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6)
}

fn format_tick(value: f32, decimals: usize) -> String {
    // Adding 0.0 turns -0.0 into 0.0, and a tiny negative that rounds to zero
    // loses its sign too, so the centre of a symmetric bar reads "0.0", not "-0.0".
    // (A hyphen, not U+2212: the embedded Noto Sans has no minus sign glyph.)
    let text = format!("{:.*}", decimals, value + 0.0);
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => text,
    }
}

/// Which cells cannot carry attention and so are drawn in the mask colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mask {
    #[default]
    None,
    /// Decoder self-attention: a query cannot see later keys (key > query).
    Causal,
}

impl Mask {
    pub fn is_masked(&self, row: usize, col: usize) -> bool {
        col >= self.visible_keys(row, usize::MAX)
    }

    /// How many leading keys (out of `keys`) query `row` may attend to. Every
    /// mask here hides a suffix of keys, so painting can work on plain slices
    /// instead of testing cell by cell.
    pub(super) fn visible_keys(&self, row: usize, keys: usize) -> usize {
        match self {
            Mask::None => keys,
            Mask::Causal => keys.min(row.saturating_add(1)),
        }
    }

    /// The values a viewer can see: row-major `[rows, cols]` minus masked cells.
    pub(super) fn visible<'v>(
        &self,
        values: &'v [f32],
        cols: usize,
    ) -> impl Iterator<Item = f32> + 'v {
        let mask = *self;
        values
            .chunks_exact(cols.max(1))
            .enumerate()
            .flat_map(move |(row, row_values)| {
                row_values[..mask.visible_keys(row, cols)].iter().copied()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(scale: Scale) -> Vec<String> {
        scale.ticks().into_iter().map(|(_, label)| label).collect()
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(
            labels(Scale::Range { min: 0.0, max: 1.0 }),
            ["0.00", "0.25", "0.50", "0.75", "1.00"]
        );
        assert_eq!(
            labels(Scale::Range {
                min: 0.0,
                max: 0.37
            }),
            ["0.0", "0.1", "0.2", "0.3"]
        );
        assert_eq!(
            labels(Scale::Range {
                min: -0.4,
                max: 0.4
            }),
            ["-0.4", "-0.2", "0.0", "0.2", "0.4"]
        );
        assert_eq!(labels(Scale::Range { min: 3.0, max: 3.0 }), ["3.00"]);
    }

    #[test]
    fn degenerate_scales_do_not_divide_by_zero() {
        assert_eq!(
            Scale::zero_to_max(&[0.0, 0.0]),
            Scale::Range { min: 0.0, max: 1.0 }
        );
        assert_eq!(
            Scale::symmetric(&[0.0]),
            Scale::Range {
                min: -1.0,
                max: 1.0
            }
        );
        assert_eq!(Scale::Range { min: 2.0, max: 2.0 }.normalise(2.0), 0.5);
        assert_eq!(
            Scale::zero_to_max(&[0.5, f32::NAN, f32::INFINITY]).max(),
            0.5
        );
    }
}
