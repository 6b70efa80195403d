//! The pixel buffer every picture is painted on, and its PNG encoding.

use super::png::{Rect, Template};
use super::text::TextBitmap;
use super::RenderError;

/// An RGB8 image, row-major, starting out as the background colour.
#[derive(Clone)]
pub(super) struct Canvas {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
}

/// How a text bitmap is laid onto the canvas.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Orientation {
    Horizontal,
    /// Turned 90 degrees counter-clockwise: reads bottom to top, like
    /// matplotlib's `rotation=90` tick labels.
    Up,
}

impl Canvas {
    pub fn new(width: u32, height: u32, background: [u8; 3]) -> Canvas {
        // `repeat` copies in doubling memcpy runs; a byte-by-byte `cycle().take()` was a
        // quarter of a whole `dump` (270 canvases of ~4 MB each).
        let count = width as usize * height as usize;
        // A grey (white above all) is one byte repeated: a memset.
        let pixels = match background {
            [r, g, b] if r == g && g == b => vec![r; count * 3],
            _ => background.repeat(count),
        };
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// A canvas over existing RGB8 pixels (a picture drawn earlier, to mark up).
    pub fn from_pixels(width: u32, height: u32, pixels: Vec<u8>) -> Canvas {
        Canvas { width, height, pixels }
    }

    /// The colour of one pixel (black outside the canvas).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        if x >= self.width || y >= self.height {
            return [0, 0, 0];
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill(&mut self, x: i64, y: i64, width: i64, height: i64, rgb: [u8; 3]) {
        let x0 = x.clamp(0, i64::from(self.width)) as usize;
        let x1 = (x + width).clamp(0, i64::from(self.width)) as usize;
        let y0 = y.clamp(0, i64::from(self.height)) as usize;
        let y1 = (y + height).clamp(0, i64::from(self.height)) as usize;
        for row in y0..y1 {
            let start = (row * self.width as usize + x0) * 3;
            let end = (row * self.width as usize + x1) * 3;
            for pixel in self.pixels[start..end].chunks_exact_mut(3) {
                pixel.copy_from_slice(&rgb);
            }
        }
    }

    /// The pixels of row `y`, the whole width.
    pub fn row(&self, y: u32) -> &[u8] {
        let width = self.width as usize * 3;
        &self.pixels[y as usize * width..(y as usize + 1) * width]
    }

    /// Mutable access to the pixels of row `y` from column `x` on, `len` pixels long.
    pub fn row_mut(&mut self, x: u32, y: u32, len: u32) -> &mut [u8] {
        let start = (y as usize * self.width as usize + x as usize) * 3;
        &mut self.pixels[start..start + len as usize * 3]
    }

    /// Copies `len` pixels of row `from_y` onto row `to_y`, both starting at `x`.
    pub fn copy_row(&mut self, x: u32, from_y: u32, to_y: u32, len: u32) {
        let width = self.width as usize;
        let from = (from_y as usize * width + x as usize) * 3;
        let to = (to_y as usize * width + x as usize) * 3;
        self.pixels.copy_within(from..from + len as usize * 3, to);
    }

    /// Copies the rectangle `x0..x1` by `y0..y1` (clipped) from `other`, a canvas of the same size.
    pub fn copy_rect_from(&mut self, other: &Canvas, x0: u32, y0: u32, x1: u32, y1: u32) {
        debug_assert!((self.width, self.height) == (other.width, other.height));
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 {
            return;
        }
        for y in y0..y1 {
            let start = (y as usize * self.width as usize + x0 as usize) * 3;
            let end = start + (x1 - x0) as usize * 3;
            self.pixels[start..end].copy_from_slice(&other.pixels[start..end]);
        }
    }

    /// The PNG file of the picture, leaving the canvas as it is.
    pub fn png(&self) -> Result<Vec<u8>, RenderError> {
        super::png::encode_rgb8(self.width, self.height, &self.pixels)
    }

    /// What pictures equal to this one outside the rectangles `drawn` share when
    /// encoded: see [`super::png::Template`].
    pub fn template(&self, drawn: &[Rect]) -> Result<Template, RenderError> {
        Template::new(self.width, self.height, &self.pixels, drawn)
    }

    /// [`Canvas::png`] of a picture that equals `template`'s frame outside its drawn rectangles.
    pub fn png_with(&self, template: &Template) -> Result<Vec<u8>, RenderError> {
        template.encode(&self.pixels)
    }

    /// Blends `text` in colour `rgb` with its top-left corner (after turning) at (x, y).
    pub fn draw_text(
        &mut self,
        text: &TextBitmap,
        x: i64,
        y: i64,
        rgb: [u8; 3],
        orientation: Orientation,
    ) {
        let (w, h) = (text.width as i64, text.height as i64);
        for sy in 0..h {
            for sx in 0..w {
                let alpha = text.coverage[(sy * w + sx) as usize];
                if alpha == 0 {
                    continue;
                }
                let (dx, dy) = match orientation {
                    Orientation::Horizontal => (x + sx, y + sy),
                    Orientation::Up => (x + sy, y + (w - 1 - sx)),
                };
                self.blend(dx, dy, rgb, alpha);
            }
        }
    }

    fn blend(&mut self, x: i64, y: i64, rgb: [u8; 3], alpha: u8) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let a = u32::from(alpha);
        for (channel, ink) in self.pixels[i..i + 3].iter_mut().zip(rgb) {
            // Integer blending keeps output identical on every platform.
            *channel = ((u32::from(*channel) * (255 - a) + u32::from(ink) * a + 127) / 255) as u8;
        }
    }
}
