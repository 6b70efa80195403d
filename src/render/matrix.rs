//! Painting a value matrix into pixels: cell sizing, pooling and the mask.

use super::canvas::Canvas;
use super::scale::Mask;

/// How one axis of a matrix (queries or keys) maps onto pixels.
///
/// With at least as many pixels as cells each cell gets a whole number of
/// pixels. With fewer, each pixel covers a run of cells and shows their
/// maximum: averaging would fade a one-token spike (the attention patterns
/// people look for) into the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Axis {
    pub cells: usize,
    pub pixels: u32,
}

impl Axis {
    /// `cells` cells drawn with `cell_px` pixels each, or pooled into `max_px`
    /// pixels when even one pixel per cell would not fit.
    pub fn new(cells: usize, cell_px: u32, max_px: u32) -> Axis {
        let max_px = max_px.max(1);
        let cell_px = cell_px.max(1);
        let pixels = if (cells as u64) * u64::from(cell_px) <= u64::from(max_px) {
            cells as u32 * cell_px
        } else if cells as u64 <= u64::from(max_px) {
            cells as u32 * (max_px / cells as u32)
        } else {
            max_px
        };
        Axis { cells, pixels }
    }

    /// Whole pixels per cell, or 0 when cells share pixels.
    pub fn cell_px(&self) -> u32 {
        if self.cells as u64 <= u64::from(self.pixels) {
            self.pixels / self.cells as u32
        } else {
            0
        }
    }

    /// Distance in pixels between neighbouring cells' centres (below 1 when pooled).
    pub fn pitch(&self) -> f32 {
        self.pixels as f32 / self.cells as f32
    }

    /// The cells pixel `p` shows, as a half-open range.
    fn block(&self, p: u32) -> (usize, usize) {
        match self.cell_px() {
            0 => {
                let n = self.cells as u64;
                let total = u64::from(self.pixels);
                let start = u64::from(p) * n / total;
                let end = (u64::from(p) + 1) * n / total;
                (start as usize, end as usize)
            }
            cell_px => {
                let cell = (p / cell_px) as usize;
                (cell, cell + 1)
            }
        }
    }

    /// The pixel that shows `cell` (the middle pixel when the cell has several).
    pub fn pixel_of(&self, cell: usize) -> u32 {
        match self.cell_px() {
            0 => {
                // The last pixel whose block starts at or before `cell`.
                let n = self.cells as u64;
                (((cell as u64 + 1) * u64::from(self.pixels) - 1) / n) as u32
            }
            cell_px => cell as u32 * cell_px + cell_px / 2,
        }
    }

    /// Centre of `cell` in pixels from the start of the axis, for labels.
    pub fn centre(&self, cell: usize) -> f32 {
        (cell as f32 + 0.5) * self.pitch()
    }

    /// Label every `step`-th cell so that labels `extent` pixels wide never touch.
    pub fn label_step(&self, extent: f32) -> usize {
        ((extent / self.pitch()).ceil() as usize).max(1)
    }
}

/// A row-major value matrix and how it maps onto pixels.
pub(super) struct Matrix<'v> {
    pub values: &'v [f32],
    pub rows: Axis,
    pub cols: Axis,
    pub mask: Mask,
}

/// Paints `matrix` with its top-left at (x, y). `colour` turns a value into a
/// colour; masked cells get `mask_rgb`.
pub(super) fn paint(
    canvas: &mut Canvas,
    x: u32,
    y: u32,
    matrix: &Matrix,
    mask_rgb: [u8; 3],
    colour: impl Fn(f32) -> [u8; 3],
) {
    let Matrix {
        values,
        rows,
        cols,
        mask,
    } = *matrix;
    let col_blocks: Vec<(usize, usize)> = (0..cols.pixels).map(|p| cols.block(p)).collect();
    let mut previous_block = None;
    for py in 0..rows.pixels {
        let (row_start, row_end) = rows.block(py);
        if previous_block == Some((row_start, row_end)) {
            // Big cells repeat the same pixel row many times: copy it.
            canvas.copy_row(x, y + py - 1, y + py, cols.pixels);
            continue;
        }
        previous_block = Some((row_start, row_end));
        let line = canvas.row_mut(x, y + py, cols.pixels);
        // A cell several pixels wide is worked out once and its colour repeated.
        let mut previous_col: Option<((usize, usize), [u8; 3])> = None;
        for (pixel, &(col_start, col_end)) in line.chunks_exact_mut(3).zip(&col_blocks) {
            if let Some((_, rgb)) = previous_col.filter(|(block, _)| *block == (col_start, col_end)) {
                pixel.copy_from_slice(&rgb);
                continue;
            }
            let mut strongest: Option<f32> = None;
            for row in row_start..row_end {
                let visible = mask.visible_keys(row, cols.cells).min(col_end);
                if visible <= col_start {
                    continue;
                }
                let block = &values[row * cols.cells + col_start..row * cols.cells + visible];
                let block_max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                strongest = Some(strongest.map_or(block_max, |s| s.max(block_max)));
            }
            let rgb = strongest.map_or(mask_rgb, &colour);
            pixel.copy_from_slice(&rgb);
            previous_col = Some(((col_start, col_end), rgb));
        }
    }
}

/// The first unmasked non-finite value, as (row, col).
pub(super) fn first_non_finite(values: &[f32], cols: usize, mask: Mask) -> Option<(usize, usize)> {
    values
        .chunks_exact(cols.max(1))
        .enumerate()
        .find_map(|(row, row_values)| {
            row_values[..mask.visible_keys(row, cols)]
                .iter()
                .position(|value| !value.is_finite())
                .map(|col| (row, col))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_axis_finds_the_pixel_of_every_cell() {
        let axis = Axis::new(5000, 1, 2048);
        assert_eq!(axis.pixels, 2048);
        assert_eq!(axis.cell_px(), 0);
        for cell in [0, 1, 2, 2500, 4999] {
            let (start, end) = axis.block(axis.pixel_of(cell));
            assert!(
                start <= cell && cell < end,
                "cell {cell} not in {start}..{end}"
            );
        }
    }

    #[test]
    fn axis_shrinks_cells_to_fit() {
        assert_eq!(
            Axis::new(5, 36, 1024),
            Axis {
                cells: 5,
                pixels: 180
            }
        );
        assert_eq!(
            Axis::new(600, 2, 1024),
            Axis {
                cells: 600,
                pixels: 600
            }
        );
    }
}
