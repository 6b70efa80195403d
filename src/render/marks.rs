//! Marks on a finished heatmap: a value written in each cell, a frame around
//! chosen cells (heads that pass a test). Layers x heads pictures are small
//! enough that a reader should not have to guess a number from a colour.

use super::canvas::{Canvas, Orientation};
use super::heatmap::Layout;
use super::text::Text;
use super::RenderError;

/// Text inside a cell is this tall...
const CELL_TEXT_PX: f32 = 12.0;
/// ...and is left out when the cell is narrower than the text plus this margin.
const CELL_TEXT_MARGIN: u32 = 4;
/// Frame width of an outlined cell, and its colour (magenta reads on every colormap here).
const OUTLINE_PX: i64 = 2;
const OUTLINE_RGB: [u8; 3] = [230, 0, 160];

/// What to draw on cell (`row`, `col`).
#[derive(Debug, Clone, PartialEq)]
pub struct CellMark {
    pub row: usize,
    pub col: usize,
    /// Written in the cell's middle, in black or white, whichever reads on its colour.
    pub text: Option<String>,
    /// Framed, inside the cell's own pixels.
    pub outline: bool,
}

/// Draw `marks` on a PNG made by `heatmap_png` with this `layout`.
pub fn mark_cells(png: &[u8], layout: &Layout, marks: &[CellMark]) -> Result<Vec<u8>, RenderError> {
    let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)?.to_rgb8();
    let (width, height) = image.dimensions();
    let mut canvas = Canvas::from_pixels(width, height, image.into_raw());
    let mut text = Text::new()?;
    let (cell_width, cell_height) = (layout.cell_width, layout.cell_height);
    for mark in marks {
        if mark.row >= layout.rows || mark.col >= layout.cols || cell_width == 0 || cell_height == 0 {
            continue;
        }
        let (centre_x, centre_y) = layout.cell_centre(mark.row, mark.col);
        if let Some(label) = &mark.text {
            let measured = text.measure(label, CELL_TEXT_PX).ceil() as u32;
            if measured + CELL_TEXT_MARGIN <= cell_width && CELL_TEXT_PX as u32 <= cell_height {
                let [r, g, b] = canvas.pixel(centre_x, centre_y);
                // Rec. 709 luma: dark cells get white text.
                let luma = 0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32;
                let ink = if luma < 128.0 { [255, 255, 255] } else { [0, 0, 0] };
                let bitmap = text.render(label, CELL_TEXT_PX);
                let left = i64::from(centre_x) - i64::from(bitmap.width / 2);
                let top = i64::from(centre_y) - i64::from(bitmap.height / 2);
                canvas.draw_text(&bitmap, left, top, ink, Orientation::Horizontal);
            }
        }
        if mark.outline {
            let (x, y) = (i64::from(centre_x) - i64::from(cell_width / 2), i64::from(centre_y) - i64::from(cell_height / 2));
            let (w, h) = (i64::from(cell_width), i64::from(cell_height));
            canvas.fill(x, y, w, OUTLINE_PX, OUTLINE_RGB);
            canvas.fill(x, y + h - OUTLINE_PX, w, OUTLINE_PX, OUTLINE_RGB);
            canvas.fill(x, y, OUTLINE_PX, h, OUTLINE_RGB);
            canvas.fill(x + w - OUTLINE_PX, y, OUTLINE_PX, h, OUTLINE_RGB);
        }
    }
    canvas.png()
}
