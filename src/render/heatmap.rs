//! One attention map as a labelled PNG heatmap: queries down, keys across.

use super::canvas::Orientation;
use super::colorbar::{self, Colorbar};
use super::colormap::Colormap;
use super::matrix::{self, Axis, Matrix};
use super::style::{
    BACKGROUND, CAPTION_PX, INK, LABEL_MAX_WIDTH, LABEL_PX, MARGIN, MUTED_INK, RULE, SUBTITLE_PX,
    TICK_GAP, TICK_LEN, TITLE_PX,
};
use super::surface::{CellNames, Raster, Surface};
use super::svg::Svg;
use super::png::{Rect, Template};
use super::text::Text;
use super::RenderError;

pub use super::scale::{Mask, Scale};

/// Pixels per cell for short sequences: big enough to read, small enough
/// that a 20-token map stays a reasonable picture.
const MAX_CELL_PX: u32 = 36;
/// Past 28 tokens cells shrink, in whole pixels so every token gets the same
/// area, keeping a side of the heatmap between half of this and this...
const TARGET_SIDE_PX: u32 = 1024;
/// ...and past one pixel per token, never grows beyond this (cells are pooled).
const MAX_SIDE_PX: u32 = 2048;
const CAPTION_GAP: u32 = 10;
const HEADER_GAP: u32 = 16;
const COLORBAR_GAP: u32 = 28;

/// What to draw around the numbers. Labels are one per token, or empty to use
/// token indices.
#[derive(Debug, Clone, Copy)]
pub struct HeatmapOptions<'a> {
    pub title: &'a str,
    pub subtitle: Option<&'a str>,
    /// One per query token (rows).
    pub row_labels: &'a [String],
    /// One per key token (columns).
    pub col_labels: &'a [String],
    pub colormap: Colormap,
    pub scale: Scale,
    pub mask: Mask,
    pub colorbar_label: &'a str,
    /// Axis captions: what the rows and the columns are.
    pub row_caption: &'a str,
    pub col_caption: &'a str,
}

impl Default for HeatmapOptions<'_> {
    fn default() -> Self {
        HeatmapOptions {
            title: "",
            subtitle: None,
            row_labels: &[],
            col_labels: &[],
            colormap: Colormap::default(),
            scale: Scale::default(),
            mask: Mask::None,
            colorbar_label: "attention weight",
            row_caption: "query",
            col_caption: "key",
        }
    }
}

/// Where things land in a heatmap picture, so callers (and tests) can find cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of the whole PNG.
    pub width: u32,
    pub height: u32,
    /// Top-left pixel of the heatmap area (query 0, key 0).
    pub heatmap_x: u32,
    pub heatmap_y: u32,
    pub heatmap_width: u32,
    pub heatmap_height: u32,
    pub rows: usize,
    pub cols: usize,
    /// Pixels per key token; 0 when there are more keys than the picture has
    /// room for and neighbouring keys share a pixel (showing their maximum).
    pub cell_width: u32,
    /// Pixels per query token; 0 when queries share pixels, as above.
    pub cell_height: u32,
    row_axis: Axis,
    col_axis: Axis,
}

impl Layout {
    /// The pixel at the middle of cell (`row`, `col`), in whole-image coordinates.
    pub fn cell_centre(&self, row: usize, col: usize) -> (u32, u32) {
        (
            self.heatmap_x + self.col_axis.pixel_of(col),
            self.heatmap_y + self.row_axis.pixel_of(row),
        )
    }
}

/// Everything measured before painting, shared by [`layout`] and [`heatmap_png`].
struct Plan {
    layout: Layout,
    title: String,
    subtitle: Option<String>,
    /// `(token index, text to draw)`, thinned so no two overlap.
    row_labels: Vec<(usize, String)>,
    col_labels: Vec<(usize, String)>,
    col_label_length: u32,
    colorbar: Colorbar,
    colorbar_x: u32,
    colorbar_height: u32,
}

/// The picture's geometry for a `rows` x `cols` map with these options.
pub fn layout(rows: usize, cols: usize, opts: &HeatmapOptions) -> Result<Layout, RenderError> {
    check_shape(rows, cols, opts)?;
    let text = Text::new()?;
    Ok(plan(rows, cols, opts, &text).layout)
}

/// Renders one attention map. `values` is row-major `[rows, cols]`: row `q`
/// holds query token `q`'s weights over every key token.
pub fn heatmap_png(
    values: &[f32],
    rows: usize,
    cols: usize,
    opts: &HeatmapOptions,
) -> Result<Vec<u8>, RenderError> {
    let (mut text, plan) = prepare(values, rows, cols, opts)?;
    let mut raster = Raster::new(plan.layout.width, plan.layout.height, BACKGROUND);
    draw(&mut raster, &mut text, values, opts, &plan);
    raster.into_png()
}

/// The same picture as [`heatmap_png`] as SVG: vector text and shapes, cells as
/// rects with tooltips up to [`super::svg::MAX_RECT_CELLS`], an embedded image past that.
pub fn heatmap_svg(
    values: &[f32],
    rows: usize,
    cols: usize,
    opts: &HeatmapOptions,
) -> Result<Vec<u8>, RenderError> {
    let (mut text, plan) = prepare(values, rows, cols, opts)?;
    let mut svg = Svg::new(plan.layout.width, plan.layout.height, &plan.title);
    draw(&mut svg, &mut text, values, opts, &plan);
    Ok(svg.finish())
}

/// Checks the input and measures the picture: everything both surfaces share.
fn prepare(values: &[f32], rows: usize, cols: usize, opts: &HeatmapOptions) -> Result<(Text, Plan), RenderError> {
    check_shape(rows, cols, opts)?;
    // Saturating: a shape whose size overflows cannot match any slice.
    let expected = rows.saturating_mul(cols);
    if values.len() != expected {
        return Err(RenderError::ShapeMismatch {
            shape: format!("[{rows} queries, {cols} keys]"),
            expected,
            got: values.len(),
        });
    }
    opts.scale.validate()?;
    if let Some((row, col)) = matrix::first_non_finite(values, cols, opts.mask) {
        return Err(RenderError::NonFinite { row, col });
    }
    let text = Text::new()?;
    let plan = plan(rows, cols, opts, &text);
    Ok((text, plan))
}

fn draw(surface: &mut dyn Surface, text: &mut Text, values: &[f32], opts: &HeatmapOptions, plan: &Plan) {
    draw_header(surface, text, &plan.title, plan.subtitle.as_deref());
    draw_cells(surface, values, opts, plan);
    draw_labels(surface, text, opts, plan);
    plan.colorbar.draw_bar(surface, plan.colorbar_x, plan.layout.heatmap_y, plan.colorbar_height);
    plan.colorbar.draw_ticks(surface, text, plan.colorbar_x, plan.layout.heatmap_y, plan.colorbar_height);
}

/// What the numbers, the title and the colour scale do not change: the subtitle, the
/// token labels and their ticks, the axis captions, the frame and the colour bar's
/// gradient. [`draw_map`] paints the rest; no part of one overlaps a part of the other,
/// so on a raster the two give [`draw`]'s pixels in either order.
fn draw_frame(surface: &mut dyn Surface, text: &mut Text, opts: &HeatmapOptions, plan: &Plan) {
    if let Some(subtitle) = &plan.subtitle {
        draw_subtitle(surface, text, subtitle, !plan.title.is_empty());
    }
    draw_labels(surface, text, opts, plan);
    plan.colorbar.draw_bar(surface, plan.colorbar_x, plan.layout.heatmap_y, plan.colorbar_height);
}

/// The title, the cells and the colour bar's ticks and caption (see [`draw_frame`]).
fn draw_map(surface: &mut dyn Surface, text: &mut Text, values: &[f32], opts: &HeatmapOptions, plan: &Plan) {
    draw_header(surface, text, &plan.title, None);
    draw_cells(surface, values, opts, plan);
    plan.colorbar.draw_ticks(surface, text, plan.colorbar_x, plan.layout.heatmap_y, plan.colorbar_height);
}

fn draw_cells(surface: &mut dyn Surface, values: &[f32], opts: &HeatmapOptions, plan: &Plan) {
    let layout = &plan.layout;
    let matrix = Matrix {
        values,
        rows: layout.row_axis,
        cols: layout.col_axis,
        mask: opts.mask,
    };
    let names = CellNames { prefix: opts.title, rows: opts.row_labels, cols: opts.col_labels };
    surface.matrix(layout.heatmap_x, layout.heatmap_y, &matrix, opts.colormap, opts.scale, Some(names));
}

/// The frame around the cells, the token labels with their ticks, and the axis captions.
fn draw_labels(surface: &mut dyn Surface, text: &mut Text, opts: &HeatmapOptions, plan: &Plan) {
    let layout = &plan.layout;
    let (x, y) = (layout.heatmap_x, layout.heatmap_y);
    let (width, height) = (layout.heatmap_width, layout.heatmap_height);
    surface.frame_around(
        i64::from(x),
        i64::from(y),
        i64::from(width),
        i64::from(height),
        RULE,
    );

    let offset = label_offset();
    let line_height = LABEL_PX.ceil() as i64;
    for (row, label) in &plan.row_labels {
        let centre = i64::from(y) + layout.row_axis.centre(*row).floor() as i64;
        surface.fill(
            i64::from(x) - 1 - i64::from(TICK_LEN),
            centre,
            i64::from(TICK_LEN),
            1,
            RULE,
        );
        let label_width = text.measure(label, LABEL_PX).ceil() as i64;
        let left = i64::from(x) - i64::from(offset) - label_width;
        let top = centre - line_height / 2;
        surface.text(text, label, LABEL_PX, left, top, INK, Orientation::Horizontal);
    }
    let below = i64::from(y + height);
    for (col, label) in &plan.col_labels {
        let centre = i64::from(x) + layout.col_axis.centre(*col).floor() as i64;
        surface.fill(centre, below + 1, 1, i64::from(TICK_LEN), RULE);
        let left = centre - line_height / 2;
        // Upright text reads bottom to top, so its end sits next to the
        // heatmap and long labels grow away from it, as in matplotlib.
        let top = below + i64::from(offset);
        surface.text(text, label, LABEL_PX, left, top, INK, Orientation::Up);
    }

    let query_length = i64::from(text.box_width(opts.row_caption, CAPTION_PX));
    let query_top = i64::from(y) + (i64::from(height) - query_length) / 2;
    surface.text(text, opts.row_caption, CAPTION_PX, i64::from(MARGIN), query_top, INK, Orientation::Up);
    let key_width = i64::from(text.box_width(opts.col_caption, CAPTION_PX));
    let key_left = i64::from(x) + (i64::from(width) - key_width) / 2;
    let key_top = below + i64::from(offset + plan.col_label_length + CAPTION_GAP);
    surface.text(text, opts.col_caption, CAPTION_PX, key_left, key_top, INK, Orientation::Horizontal);
}

/// The fixed part of every heatmap picture of one shape and one set of labels, drawn
/// once: a dump's hundreds of heads then each paint only their title, cells and colour
/// scale onto a canvas holding it, the same pixels [`heatmap_png`] draws.
pub struct HeatmapFrame {
    rows: usize,
    cols: usize,
    subtitle: Option<String>,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    colormap: Colormap,
    mask: Mask,
    colorbar_label: String,
    row_caption: String,
    col_caption: String,
    /// The layout and colour-bar placement the frame was drawn for.
    layout: Layout,
    colorbar_x: u32,
    colorbar_height: u32,
    pixels: Raster,
    /// The frame's share of every picture's PNG, coded once.
    template: Template,
    id: u64,
}

impl HeatmapFrame {
    /// The frame of `rows` x `cols` maps drawn with `opts`. Each map brings its own title
    /// and scale; `opts.title` is an example of the titles to come (whether there is one
    /// moves everything below it), `opts.scale` is not used.
    pub fn new(rows: usize, cols: usize, opts: &HeatmapOptions) -> Result<Self, RenderError> {
        check_shape(rows, cols, opts)?;
        let mut text = Text::new()?;
        let plan = plan(rows, cols, opts, &text);
        let mut pixels = Raster::new(plan.layout.width, plan.layout.height, BACKGROUND);
        draw_frame(&mut pixels, &mut text, opts, &plan);
        let template = pixels.canvas.template(&drawn_rects(&plan.layout, plan.colorbar_x, plan.colorbar_height))?;
        Ok(HeatmapFrame {
            rows,
            cols,
            subtitle: opts.subtitle.map(str::to_string),
            row_labels: opts.row_labels.to_vec(),
            col_labels: opts.col_labels.to_vec(),
            colormap: opts.colormap,
            mask: opts.mask,
            colorbar_label: opts.colorbar_label.to_string(),
            row_caption: opts.row_caption.to_string(),
            col_caption: opts.col_caption.to_string(),
            layout: plan.layout,
            colorbar_x: plan.colorbar_x,
            colorbar_height: plan.colorbar_height,
            pixels,
            template,
            id: FRAME_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// [`heatmap_png`] of `values` with this frame's options and `title` and `scale`:
    /// the same pixels, from a copy of the frame when the map's layout is the frame's (a
    /// wider tick label or title can move things: then it is drawn whole).
    pub fn png(&self, values: &[f32], title: &str, scale: Scale) -> Result<Vec<u8>, RenderError> {
        let opts = HeatmapOptions {
            title,
            subtitle: self.subtitle.as_deref(),
            row_labels: &self.row_labels,
            col_labels: &self.col_labels,
            colormap: self.colormap,
            scale,
            mask: self.mask,
            colorbar_label: &self.colorbar_label,
            row_caption: &self.row_caption,
            col_caption: &self.col_caption,
        };
        let (mut text, plan) = prepare(values, self.rows, self.cols, &opts)?;
        if plan.layout != self.layout || plan.colorbar_x != self.colorbar_x {
            let mut raster = Raster::new(plan.layout.width, plan.layout.height, BACKGROUND);
            draw(&mut raster, &mut text, values, &opts, &plan);
            return raster.into_png();
        }
        // Each thread keeps a canvas holding this frame and puts back only what the last
        // map drew over (its title line and the colour bar's ticks and caption): the cells
        // cover their whole area again. No copy of the whole picture per map, and only
        // what the map drew is filtered and coded: the rest of the PNG is the template's.
        FRAMED.with(|slot| {
            let mut slot = slot.borrow_mut();
            let raster = match &mut *slot {
                Some((id, raster)) if *id == self.id => {
                    let canvas = &self.pixels.canvas;
                    let [title, scale, _] = drawn_rects(&self.layout, self.colorbar_x, self.colorbar_height);
                    for (x0, y0, x1, y1) in [title, scale] {
                        raster.canvas.copy_rect_from(canvas, x0, y0, x1, y1);
                    }
                    raster
                }
                other => &mut other.insert((self.id, self.pixels.clone())).1,
            };
            draw_map(raster, &mut text, values, &opts, &plan);
            raster.canvas.png_with(&self.template)
        })
    }
}

/// Where [`draw_map`] paints (the rectangles may reach past the picture): the title's
/// line, the colour bar's ticks and caption (right of the bar, as far as they can reach
/// above and below it), and the cells.
fn drawn_rects(layout: &Layout, colorbar_x: u32, colorbar_height: u32) -> [Rect; 3] {
    let title = (0, MARGIN, layout.width, MARGIN + TITLE_PX.ceil() as u32);
    let top = layout.heatmap_y.saturating_sub(Colorbar::overhang() + 1);
    let bottom = layout.heatmap_y + colorbar_height + Colorbar::overhang() + 1;
    let scale = (colorbar_x + colorbar::BAR_WIDTH, top, layout.width, bottom);
    let cells = (layout.heatmap_x, layout.heatmap_y, layout.heatmap_x + layout.heatmap_width, layout.heatmap_y + layout.heatmap_height);
    [title, scale, cells]
}

thread_local! {
    /// [`HeatmapFrame::png`]'s canvas on this thread, and the frame it was last drawn on.
    static FRAMED: std::cell::RefCell<Option<(u64, Raster)>> = const { std::cell::RefCell::new(None) };
}

/// Tells frames apart, so a thread's canvas is never reused across two of them.
static FRAME_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn check_shape(rows: usize, cols: usize, opts: &HeatmapOptions) -> Result<(), RenderError> {
    if rows == 0 || cols == 0 {
        return Err(RenderError::Empty {
            shape: format!("[{rows} queries, {cols} keys]"),
        });
    }
    for (axis, labels, expected) in [
        ("query", opts.row_labels, rows),
        ("key", opts.col_labels, cols),
    ] {
        if !labels.is_empty() && labels.len() != expected {
            return Err(RenderError::LabelCount {
                axis,
                expected,
                got: labels.len(),
            });
        }
    }
    Ok(())
}

/// Gap between the heatmap and its token labels. At least half a label line,
/// so the last query label (centred on a thin row, overhanging it) can never
/// reach down into the key labels under the heatmap.
pub(super) fn label_offset() -> u32 {
    (TICK_LEN + TICK_GAP).max((LABEL_PX / 2.0).ceil() as u32)
}

/// Height of the title block (title and optional subtitle), 0 without a title.
pub(super) fn header_height(title: &str, subtitle: Option<&str>) -> u32 {
    let mut height = 0;
    if !title.is_empty() {
        height += TITLE_PX.ceil() as u32;
    }
    if subtitle.is_some() {
        height += 4 + SUBTITLE_PX.ceil() as u32;
    }
    height
}

/// Width of the title block, which may be wider than the picture below it.
pub(super) fn header_width(text: &Text, title: &str, subtitle: Option<&str>) -> u32 {
    let title_width = text.measure(title, TITLE_PX);
    let subtitle_width = subtitle.map_or(0.0, |s| text.measure(s, SUBTITLE_PX));
    title_width.max(subtitle_width).ceil() as u32
}

/// Title and subtitle at the top left; the caller has already shortened them.
pub(super) fn draw_header(surface: &mut dyn Surface, text: &mut Text, title: &str, subtitle: Option<&str>) {
    if !title.is_empty() {
        surface.text(text, title, TITLE_PX, i64::from(MARGIN), i64::from(MARGIN), INK, Orientation::Horizontal);
    }
    if let Some(subtitle) = subtitle {
        draw_subtitle(surface, text, subtitle, !title.is_empty());
    }
}

/// The subtitle, under the title's line when there is a title (drawn or not).
fn draw_subtitle(surface: &mut dyn Surface, text: &mut Text, subtitle: &str, below_title: bool) {
    let y = if below_title { MARGIN + TITLE_PX.ceil() as u32 + 4 } else { MARGIN };
    surface.text(text, subtitle, SUBTITLE_PX, i64::from(MARGIN), i64::from(y), MUTED_INK, Orientation::Horizontal);
}

/// Token labels to draw along an axis: every `step`-th, so neighbours never overlap.
pub(super) fn thinned_labels(text: &Text, axis: Axis, labels: &[String]) -> Vec<(usize, String)> {
    // Two pixels of leading: labels that touch are legible but hard to scan.
    let step = axis.label_step(LABEL_PX + 2.0);
    (0..axis.cells)
        .step_by(step)
        .map(|index| {
            // Once labels are thinned a reader cannot count rows to tell which
            // token a label names, so it carries the token's index.
            let raw = match labels.get(index) {
                Some(label) if step > 1 => format!("#{index} {label}"),
                Some(label) => label.clone(),
                None => index.to_string(),
            };
            (index, text.label(&raw, LABEL_PX, LABEL_MAX_WIDTH))
        })
        .collect()
}

fn cell_px(tokens: usize) -> u32 {
    (TARGET_SIDE_PX / tokens.max(1) as u32).clamp(1, MAX_CELL_PX)
}

fn plan(rows: usize, cols: usize, opts: &HeatmapOptions, text: &Text) -> Plan {
    let row_axis = Axis::new(rows, cell_px(rows), MAX_SIDE_PX);
    let col_axis = Axis::new(cols, cell_px(cols), MAX_SIDE_PX);

    let row_labels = thinned_labels(text, row_axis, opts.row_labels);
    let col_labels = thinned_labels(text, col_axis, opts.col_labels);
    let widest = |labels: &[(usize, String)]| {
        labels
            .iter()
            .map(|(_, label)| text.measure(label, LABEL_PX).ceil() as u32)
            .max()
            .unwrap_or(0)
    };
    let row_label_width = widest(&row_labels);
    let col_label_length = widest(&col_labels);

    let caption_width = CAPTION_PX.ceil() as u32;
    let heatmap_x = MARGIN + caption_width + CAPTION_GAP + row_label_width + label_offset();
    let title = text.label(opts.title, TITLE_PX, 1600.0);
    let subtitle = opts.subtitle.map(|s| text.label(s, SUBTITLE_PX, 1600.0));
    let heatmap_y = MARGIN + header_height(&title, subtitle.as_deref()) + HEADER_GAP;

    let colorbar = Colorbar {
        colormap: opts.colormap,
        ticks: opts.scale.ticks(),
        label: opts.colorbar_label.to_string(),
    };
    let colorbar_x = heatmap_x + col_axis.pixels + COLORBAR_GAP;
    let colorbar_height = row_axis.pixels.max(colorbar::MIN_HEIGHT);

    let header_width = header_width(text, &title, subtitle.as_deref());
    let width = (colorbar_x + colorbar.width(text)).max(MARGIN + header_width) + MARGIN;
    let key_caption_bottom = heatmap_y
        + row_axis.pixels
        + label_offset()
        + col_label_length
        + CAPTION_GAP
        + caption_width;
    let colorbar_bottom = heatmap_y + colorbar_height + Colorbar::overhang();
    let height = key_caption_bottom.max(colorbar_bottom) + MARGIN;

    Plan {
        layout: Layout {
            width,
            height,
            heatmap_x,
            heatmap_y,
            heatmap_width: col_axis.pixels,
            heatmap_height: row_axis.pixels,
            rows,
            cols,
            cell_width: col_axis.cell_px(),
            cell_height: row_axis.cell_px(),
            row_axis,
            col_axis,
        },
        title,
        subtitle,
        row_labels,
        col_labels,
        col_label_length,
        colorbar,
        colorbar_x,
        colorbar_height,
    }
}
