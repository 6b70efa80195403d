//! Every head at a glance: one small tile per (layer, head), layers down, heads across.

use super::canvas::Orientation;
use super::colorbar::{self, Colorbar};
use super::colormap::Colormap;
use super::heatmap::{draw_header, header_height, header_width};
use super::matrix::{self, Axis, Matrix};
use super::scale::{Mask, Scale};
use super::style::{BACKGROUND, CAPTION_PX, INK, LABEL_PX, MARGIN, RULE, SUBTITLE_PX, TITLE_PX};
use super::surface::{CellNames, Raster, Surface};
use super::svg::{Svg, MAX_RECT_CELLS};
use super::text::Text;
use super::RenderError;

/// A tile aims for about this many pixels a side...
const TILE_TARGET_PX: u32 = 120;
/// ...with no more than this per token, so short sequences stay thumbnails.
const MAX_TILE_CELL_PX: u32 = 8;
/// All tiles together stay within this many pixels each way, unless that
/// would make a tile smaller than `MIN_TILE_PX`.
const MAX_GRID_PX: u32 = 2048;
const MIN_TILE_PX: u32 = 8;
const TILE_GAP: u32 = 6;
const LABEL_GAP: u32 = 6;
const CAPTION_GAP: u32 = 8;
const HEADER_GAP: u32 = 16;
const COLORBAR_GAP: u32 = 28;
const MAX_COLORBAR_PX: u32 = 480;

#[derive(Debug, Clone, Copy)]
pub struct GridOptions<'a> {
    pub title: &'a str,
    pub subtitle: Option<&'a str>,
    pub colormap: Colormap,
    /// Colour each tile from 0 to its own maximum (the default): heads differ a
    /// lot in sharpness, and one shared scale would leave most tiles near-blank.
    /// With a diverging colormap each tile is `-m..m` of its own values instead.
    pub scale_per_head: bool,
    /// One given range for every tile (`--scale fixed`: 0..1), overriding `scale_per_head`.
    pub fixed_scale: Option<Scale>,
    pub mask: Mask,
    pub colorbar_label: &'a str,
    /// One per token, for tooltips on surfaces that have them (SVG); may be empty.
    pub labels: &'a [String],
}

impl Default for GridOptions<'_> {
    fn default() -> Self {
        GridOptions {
            title: "",
            subtitle: None,
            colormap: Colormap::default(),
            scale_per_head: true,
            fixed_scale: None,
            mask: Mask::None,
            colorbar_label: "attention weight",
            labels: &[],
        }
    }
}

/// Renders `values`, row-major `[layers, heads, seq, seq]`, as a grid of tiles.
pub fn grid_png(
    values: &[f32],
    layers: usize,
    heads: usize,
    seq: usize,
    opts: &GridOptions,
) -> Result<Vec<u8>, RenderError> {
    let (mut text, plan) = prepare(values, layers, heads, seq, opts)?;
    let mut raster = Raster::new(plan.width, plan.height, BACKGROUND);
    draw(&mut raster, &mut text, values, opts.labels, &plan);
    raster.into_png()
}

/// The same picture as [`grid_png`] as SVG (tiles as rects up to
/// [`super::svg::MAX_RECT_CELLS`] cells in all, embedded images past that).
pub fn grid_svg(
    values: &[f32],
    layers: usize,
    heads: usize,
    seq: usize,
    opts: &GridOptions,
) -> Result<Vec<u8>, RenderError> {
    let (mut text, plan) = prepare(values, layers, heads, seq, opts)?;
    let mut svg = Svg::new(plan.width, plan.height, &plan.title);
    if values.len() > MAX_RECT_CELLS {
        svg.force_images();
    }
    draw(&mut svg, &mut text, values, opts.labels, &plan);
    Ok(svg.finish())
}

/// Everything measured before drawing, shared by both surfaces.
struct GridPlan {
    width: u32,
    height: u32,
    heads: usize,
    seq: usize,
    mask: Mask,
    colormap: Colormap,
    diverging: bool,
    shared_scale: Option<Scale>,
    axis: Axis,
    tile: u32,
    pitch: u32,
    tiles_width: u32,
    tiles_height: u32,
    grid_x: u32,
    grid_y: u32,
    head_caption_y: u32,
    head_labels_y: u32,
    title: String,
    subtitle: Option<String>,
    layer_labels: Vec<(usize, String)>,
    head_labels: Vec<(usize, String)>,
    colorbar: Colorbar,
    colorbar_x: u32,
    colorbar_height: u32,
}

fn prepare(
    values: &[f32],
    layers: usize,
    heads: usize,
    seq: usize,
    opts: &GridOptions,
) -> Result<(Text, GridPlan), RenderError> {
    let shape = format!("[{layers} layers, {heads} heads, {seq} queries, {seq} keys]");
    if layers == 0 || heads == 0 || seq == 0 {
        return Err(RenderError::Empty { shape });
    }
    // Checked: a shape whose size overflows cannot match any slice.
    let tile_len = seq.saturating_mul(seq);
    let expected = layers.saturating_mul(heads).saturating_mul(tile_len);
    if values.len() != expected {
        return Err(RenderError::ShapeMismatch {
            shape,
            expected,
            got: values.len(),
        });
    }
    for (index, tile) in values.chunks_exact(tile_len).enumerate() {
        if let Some((row, col)) = matrix::first_non_finite(tile, seq, opts.mask) {
            return Err(RenderError::NonFiniteInGrid {
                layer: index / heads,
                head: index % heads,
                row,
                col,
            });
        }
    }
    let diverging = opts.colormap.is_diverging();
    let shared_scale = if let Some(scale) = opts.fixed_scale {
        Some(scale)
    } else if opts.scale_per_head {
        None
    } else {
        Some(visible_scale(
            values.chunks_exact(tile_len),
            seq,
            opts.mask,
            diverging,
        ))
    };

    let text = Text::new()?;

    // Tiles: as big as the target allows, shrunk (then pooled) to fit the cap.
    let tile_cap = tile_cap(heads).min(tile_cap(layers));
    let cell_px = (TILE_TARGET_PX / seq as u32).clamp(1, MAX_TILE_CELL_PX);
    let axis = Axis::new(seq, cell_px, tile_cap);
    let tile = axis.pixels;
    let pitch = tile + TILE_GAP;
    let tiles_width = heads as u32 * pitch - TILE_GAP;
    let tiles_height = layers as u32 * pitch - TILE_GAP;

    let layer_step = ((LABEL_PX / pitch as f32).ceil() as usize).max(1);
    let layer_labels: Vec<(usize, String)> = (0..layers)
        .step_by(layer_step)
        .map(|l| (l, format!("L{l}")))
        .collect();
    let widest_head = text.measure(&format!("H{}", heads - 1), LABEL_PX).ceil() as u32;
    let head_step = (((widest_head + LABEL_GAP) as f32 / pitch as f32).ceil() as usize).max(1);
    let head_labels: Vec<(usize, String)> = (0..heads)
        .step_by(head_step)
        .map(|h| (h, format!("H{h}")))
        .collect();
    let layer_label_width = layer_labels
        .iter()
        .map(|(_, label)| text.measure(label, LABEL_PX).ceil() as u32)
        .max()
        .unwrap_or(0);

    let title = text.label(opts.title, TITLE_PX, 1600.0);
    let subtitle = opts.subtitle.map(|s| text.label(s, SUBTITLE_PX, 1600.0));
    let caption_px = CAPTION_PX.ceil() as u32;
    let label_px = LABEL_PX.ceil() as u32;
    let grid_x = MARGIN + caption_px + CAPTION_GAP + layer_label_width + LABEL_GAP;
    let head_caption_y = MARGIN + header_height(&title, subtitle.as_deref()) + HEADER_GAP;
    let head_labels_y = head_caption_y + caption_px + 2;
    let grid_y = head_labels_y + label_px + LABEL_GAP;

    let colorbar = if let Some(scale) = shared_scale {
        Colorbar {
            colormap: opts.colormap,
            ticks: scale.ticks(),
            label: opts.colorbar_label.to_string(),
        }
    } else {
        // Each tile has its own range, so the bar can only say where a head's
        // own maximum (and, for diffs, its zero) sits, not give numbers.
        let ticks = if diverging {
            vec![
                (0.0, "-head max".to_string()),
                (0.5, "0".to_string()),
                (1.0, "head max".to_string()),
            ]
        } else {
            vec![(0.0, "0".to_string()), (1.0, "head max".to_string())]
        };
        Colorbar {
            colormap: opts.colormap,
            ticks,
            label: opts.colorbar_label.to_string(),
        }
    };
    let colorbar_x = grid_x + tiles_width + COLORBAR_GAP;
    // A bar as tall as a 32-layer grid is mostly empty colour: stop at a size
    // that still reads well.
    let colorbar_height = tiles_height.clamp(colorbar::MIN_HEIGHT, MAX_COLORBAR_PX);
    let width = (colorbar_x + colorbar.width(&text))
        .max(MARGIN + header_width(&text, &title, subtitle.as_deref()))
        + MARGIN;
    let height =
        (grid_y + tiles_height).max(grid_y + colorbar_height + Colorbar::overhang()) + MARGIN;

    let plan = GridPlan {
        width,
        height,
        heads,
        seq,
        mask: opts.mask,
        colormap: opts.colormap,
        diverging,
        shared_scale,
        axis,
        tile,
        pitch,
        tiles_width,
        tiles_height,
        grid_x,
        grid_y,
        head_caption_y,
        head_labels_y,
        title,
        subtitle,
        layer_labels,
        head_labels,
        colorbar,
        colorbar_x,
        colorbar_height,
    };
    Ok((text, plan))
}

fn draw(surface: &mut dyn Surface, text: &mut Text, values: &[f32], labels: &[String], plan: &GridPlan) {
    let GridPlan { heads, seq, axis, tile, pitch, tiles_width, tiles_height, grid_x, grid_y, head_caption_y, head_labels_y, colormap, diverging, mask, .. } = *plan;
    let tile_len = seq * seq;
    draw_header(surface, text, &plan.title, plan.subtitle.as_deref());
    let line_height = LABEL_PX.ceil() as i64;
    for (index, values) in values.chunks_exact(tile_len).enumerate() {
        let (layer, head) = (index / heads, index % heads);
        let x = grid_x + head as u32 * pitch;
        let y = grid_y + layer as u32 * pitch;
        let scale = plan.shared_scale
            .unwrap_or_else(|| visible_scale(std::iter::once(values), seq, mask, diverging));
        let matrix = Matrix {
            values,
            rows: axis,
            cols: axis,
            mask,
        };
        let prefix = format!("layer {layer}, head {head}");
        let names = CellNames { prefix: &prefix, rows: labels, cols: labels };
        surface.matrix(x, y, &matrix, colormap, scale, Some(names));
        surface.frame_around(
            i64::from(x),
            i64::from(y),
            i64::from(tile),
            i64::from(tile),
            RULE,
        );
    }

    for (layer, label) in &plan.layer_labels {
        let label_width = text.measure(label, LABEL_PX).ceil() as i64;
        let centre = i64::from(grid_y + *layer as u32 * pitch + tile / 2);
        let left = i64::from(grid_x - LABEL_GAP) - label_width;
        surface.text(text, label, LABEL_PX, left, centre - line_height / 2, INK, Orientation::Horizontal);
    }
    for (head, label) in &plan.head_labels {
        let label_width = text.measure(label, LABEL_PX).ceil() as i64;
        let centre = i64::from(grid_x + *head as u32 * pitch + tile / 2);
        surface.text(text, label, LABEL_PX, centre - label_width / 2, i64::from(head_labels_y), INK, Orientation::Horizontal);
    }
    let layer_caption_width = i64::from(text.box_width("layer", CAPTION_PX));
    let layer_caption_top = i64::from(grid_y) + (i64::from(tiles_height) - layer_caption_width) / 2;
    surface.text(text, "layer", CAPTION_PX, i64::from(MARGIN), layer_caption_top, INK, Orientation::Up);
    let head_caption_width = i64::from(text.box_width("head", CAPTION_PX));
    let head_caption_left = i64::from(grid_x) + (i64::from(tiles_width) - head_caption_width) / 2;
    surface.text(text, "head", CAPTION_PX, head_caption_left, i64::from(head_caption_y), INK, Orientation::Horizontal);

    plan.colorbar.draw(surface, text, plan.colorbar_x, grid_y, plan.colorbar_height);
}


/// Largest tile side that fits `count` tiles (and their gaps) into the cap.
fn tile_cap(count: usize) -> u32 {
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let gaps = TILE_GAP.saturating_mul(count.saturating_sub(1));
    (MAX_GRID_PX.saturating_sub(gaps) / count.max(1)).max(MIN_TILE_PX)
}

/// The default scale over the cells that are not masked: masked cells are not
/// attention, so they must not stretch or shift the colours of the rest.
fn visible_scale<'v>(
    tiles: impl Iterator<Item = &'v [f32]>,
    seq: usize,
    mask: Mask,
    diverging: bool,
) -> Scale {
    let visible = tiles.flat_map(|tile| mask.visible(tile, seq));
    if diverging {
        Scale::symmetric_of(visible)
    } else {
        Scale::zero_to_max_of(visible)
    }
}
