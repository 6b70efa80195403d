//! The vector surface: a planned picture as SVG, for papers and slides.
//!
//! Same coordinates as the PNG (one user unit per pixel, `viewBox` = the PNG's
//! size), text as `<text>` in Noto Sans (the viewer's own font stands in when it
//! is not installed), cells as `<rect>`s with `<title>` tooltips while the map
//! is small enough to stay a light file, and one embedded PNG of the cells past
//! that (labels stay vector). Every byte follows from the input: no ids from
//! counters shared between pictures, no dates.

use std::fmt::Write;

use super::canvas::{Canvas, Orientation};
use super::colormap::{rgb_hex, Colormap};
use super::matrix::{self, Matrix};
use super::scale::Scale;
use super::style::BACKGROUND;
use super::surface::{CellNames, Surface};
use super::text::Text;

/// Most cells drawn as `<rect>`s (128 x 128 tokens); a bigger map is embedded as an image.
pub const MAX_RECT_CELLS: usize = 128 * 128;

/// An SVG document being drawn.
pub(super) struct Svg {
    body: String,
    gradients: usize,
    force_images: bool,
}

impl Svg {
    pub fn new(width: u32, height: u32, title: &str) -> Svg {
        let mut body = String::new();
        let _ = write!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"'Noto Sans', 'DejaVu Sans', sans-serif\">\n<title>{}</title>\n<rect width=\"{width}\" height=\"{height}\" fill=\"{}\"/>\n",
            escape(title),
            hex(BACKGROUND)
        );
        Svg { body, gradients: 0, force_images: false }
    }

    /// Draw every matrix as an embedded image (a grid of many tiles would be too many rects).
    pub fn force_images(&mut self) {
        self.force_images = true;
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.body.push_str("</svg>\n");
        self.body.into_bytes()
    }
}

impl Surface for Svg {
    fn fill(&mut self, x: i64, y: i64, width: i64, height: i64, rgb: [u8; 3]) {
        if width > 0 && height > 0 {
            let _ = writeln!(self.body, "<rect x=\"{x}\" y=\"{y}\" width=\"{width}\" height=\"{height}\" fill=\"{}\"/>", hex(rgb));
        }
    }

    fn text(&mut self, text: &mut Text, line: &str, px: f32, x: i64, y: i64, rgb: [u8; 3], orientation: Orientation) {
        let ascent = text.ascent(px).round() as i64;
        let size = text.em_px(px);
        let place = match orientation {
            Orientation::Horizontal => format!("x=\"{x}\" y=\"{}\"", y + ascent),
            // The raster turns the line's box counter-clockwise: its start sits at
            // the box's bottom and its baseline `ascent` in from the box's left.
            Orientation::Up => {
                let length = i64::from(text.box_width(line, px));
                format!("transform=\"translate({} {}) rotate(-90)\"", x + ascent, y + length)
            }
        };
        let _ = writeln!(
            self.body,
            "<text {place} font-size=\"{size:.2}\" fill=\"{}\" xml:space=\"preserve\">{}</text>",
            hex(rgb),
            escape(line)
        );
    }

    fn matrix(&mut self, x: u32, y: u32, matrix: &Matrix, colormap: Colormap, scale: Scale, names: Option<CellNames>) {
        let (rows, cols) = (matrix.rows, matrix.cols);
        let cells = rows.cells.saturating_mul(cols.cells);
        let (cell_w, cell_h) = (cols.cell_px(), rows.cell_px());
        if self.force_images || cells > MAX_RECT_CELLS || cell_w == 0 || cell_h == 0 {
            // One PNG of exactly the raster's pixels: the same pooling, the same mask.
            let mut canvas = Canvas::new(cols.pixels, rows.pixels, BACKGROUND);
            matrix::paint(&mut canvas, 0, 0, matrix, colormap.mask_rgb(), |value| colormap.rgb(scale.normalise(value)));
            if let Ok(png) = canvas.png() {
                let _ = writeln!(
                    self.body,
                    "<image x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" xlink:href=\"data:image/png;base64,{}\"/>",
                    cols.pixels,
                    rows.pixels,
                    super::base64::encode(&png)
                );
            }
            return;
        }
        self.body.push_str("<g shape-rendering=\"crispEdges\">\n");
        for row in 0..rows.cells {
            let visible = matrix.mask.visible_keys(row, cols.cells);
            let top = y + row as u32 * cell_h;
            for col in 0..cols.cells {
                let left = x + col as u32 * cell_w;
                if col >= visible {
                    let _ = writeln!(self.body, "<rect x=\"{left}\" y=\"{top}\" width=\"{cell_w}\" height=\"{cell_h}\" fill=\"{}\"/>", hex(colormap.mask_rgb()));
                    continue;
                }
                let value = matrix.values[row * cols.cells + col];
                let rgb = colormap.rgb(scale.normalise(value));
                let _ = write!(self.body, "<rect x=\"{left}\" y=\"{top}\" width=\"{cell_w}\" height=\"{cell_h}\" fill=\"{}\">", hex(rgb));
                if let Some(names) = &names {
                    let name = |labels: &[String], index: usize| labels.get(index).map(|l| format!(" {}", escape(&plain(l)))).unwrap_or_default();
                    let prefix = if names.prefix.is_empty() { String::new() } else { format!("{}: ", escape(names.prefix)) };
                    let _ = write!(
                        self.body,
                        "<title>{prefix}query {row}{} \u{2192} key {col}{}: {value:.4}</title>",
                        name(names.rows, row),
                        name(names.cols, col)
                    );
                }
                self.body.push_str("</rect>\n");
            }
        }
        self.body.push_str("</g>\n");
    }

    fn gradient(&mut self, x: u32, y: u32, width: u32, height: u32, colormap: Colormap) {
        let id = format!("colorbar{}", self.gradients);
        self.gradients += 1;
        let _ = writeln!(self.body, "<linearGradient id=\"{id}\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
        const STOPS: usize = 32;
        for stop in 0..=STOPS {
            let t = stop as f32 / STOPS as f32;
            let _ = writeln!(self.body, "<stop offset=\"{t:.4}\" stop-color=\"{}\"/>", hex(colormap.rgb(t)));
        }
        let _ = writeln!(self.body, "</linearGradient>\n<rect x=\"{x}\" y=\"{y}\" width=\"{width}\" height=\"{height}\" fill=\"url(#{id})\"/>");
    }
}

/// A fill or stop colour, `#rrggbb`.
fn hex(rgb: [u8; 3]) -> String {
    format!("#{}", rgb_hex(rgb))
}

/// Text as XML character data or an attribute value.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// A raw token as plain text XML 1.0 can hold: control characters (not
/// allowed even as references) and non-characters become `U+XXXX`.
fn plain(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => format!("U+{:04X}", u32::from(c)),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => format!("U+{:04X}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}
