//! Where a planned picture is drawn: a raster (pixels, then PNG) or a vector
//! surface (SVG). Layout code measures once and issues the same calls to
//! either, so a PNG and an SVG of one map never disagree on a title, a label,
//! the colour scale or the mask.

use super::canvas::{Canvas, Orientation};
use super::colormap::Colormap;
use super::matrix::{self, Matrix};
use super::scale::Scale;
use super::text::Text;
use super::RenderError;

/// Token names of a matrix's rows and columns, for tooltips on surfaces that have them.
#[derive(Clone, Copy)]
pub(super) struct CellNames<'a> {
    /// Shown before each tooltip, e.g. "layer 3, head 1".
    pub prefix: &'a str,
    pub rows: &'a [String],
    pub cols: &'a [String],
}

/// The drawing calls every picture is made of. Coordinates are whole pixels of
/// the raster picture; a vector surface uses the same numbers as its user units.
pub(super) trait Surface {
    /// A filled rectangle.
    fn fill(&mut self, x: i64, y: i64, width: i64, height: i64, rgb: [u8; 3]);

    /// A one-pixel frame just outside the rectangle (the data inside keeps every pixel).
    fn frame_around(&mut self, x: i64, y: i64, width: i64, height: i64, rgb: [u8; 3]) {
        self.fill(x - 1, y - 1, width + 2, 1, rgb);
        self.fill(x - 1, y + height, width + 2, 1, rgb);
        self.fill(x - 1, y, 1, height, rgb);
        self.fill(x + width, y, 1, height, rgb);
    }

    /// One line of already displayable text (see [`Text::label`]) whose box,
    /// [`Text::box_width`] by `px.ceil()` before turning, has its top-left corner
    /// at (x, y) after turning.
    #[allow(clippy::too_many_arguments)] // a line's text, size, place, ink and turn: one call, as the raster needs them
    fn text(&mut self, text: &mut Text, line: &str, px: f32, x: i64, y: i64, rgb: [u8; 3], orientation: Orientation);

    /// A value matrix with its top-left at (x, y), pooled as [`matrix::paint`] does.
    fn matrix(&mut self, x: u32, y: u32, matrix: &Matrix, colormap: Colormap, scale: Scale, names: Option<CellNames>);

    /// A vertical colour bar: the colormap's top at `y`, its bottom at `y + height`.
    fn gradient(&mut self, x: u32, y: u32, width: u32, height: u32, colormap: Colormap) {
        for row in 0..height {
            // Top is the high end, as on every plotting library's colour bar.
            let t = 1.0 - (row as f32 + 0.5) / height as f32;
            self.fill(i64::from(x), i64::from(y + row), i64::from(width), 1, colormap.rgb(t));
        }
    }
}

/// Pixels: the surface of PNG output.
#[derive(Clone)]
pub(super) struct Raster {
    pub canvas: Canvas,
}

impl Raster {
    pub fn new(width: u32, height: u32, background: [u8; 3]) -> Raster {
        Raster { canvas: Canvas::new(width, height, background) }
    }

    pub fn into_png(self) -> Result<Vec<u8>, RenderError> {
        self.canvas.png()
    }
}

impl Surface for Raster {
    fn fill(&mut self, x: i64, y: i64, width: i64, height: i64, rgb: [u8; 3]) {
        self.canvas.fill(x, y, width, height, rgb);
    }

    fn text(&mut self, text: &mut Text, line: &str, px: f32, x: i64, y: i64, rgb: [u8; 3], orientation: Orientation) {
        let bitmap = text.render(line, px);
        self.canvas.draw_text(&bitmap, x, y, rgb, orientation);
    }

    fn matrix(&mut self, x: u32, y: u32, matrix: &Matrix, colormap: Colormap, scale: Scale, _names: Option<CellNames>) {
        matrix::paint(&mut self.canvas, x, y, matrix, colormap.mask_rgb(), |value| colormap.rgb(scale.normalise(value)));
    }
}
