//! Every head at a glance: one small tile per (layer, head), layers down, heads across.

use super::canvas::{Canvas, Orientation};
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
    let shared_scale = check_values(values, layers, heads, seq, opts)?;
    let mut grid = GridPng::with_scale(layers, heads, seq, opts, shared_scale)?;
    let painter = grid.painter();
    for (index, tile_values) in values.chunks_exact(seq * seq).enumerate() {
        grid.place(painter.paint(index / heads, index % heads, tile_values)?);
    }
    grid.finish()
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
    let shared_scale = check_values(values, layers, heads, seq, opts)?;
    let mut grid = GridSvg::with_scale(layers, heads, seq, opts, shared_scale)?;
    for (index, tile_values) in values.chunks_exact(seq * seq).enumerate() {
        grid.add(index / heads, index % heads, tile_values)?;
    }
    Ok(grid.finish())
}

/// A grid PNG built one tile at a time, so a caller streaming a model's layers never holds
/// every map: [`GridPng::painter`] paints a head's tile (in parallel, anywhere), and
/// [`GridPng::place`] puts it on the picture. Tiles never overlap, so the order they are
/// placed in does not change a byte. Each tile is scaled on its own (`scale_per_head`) or
/// by `fixed_scale`: a scale over all the data is not known until the end (use [`grid_png`]).
pub struct GridPng {
    plan: GridPlan,
    text: Text,
    raster: Raster,
}

/// What painting one tile needs: plain data, shared across threads.
#[derive(Debug, Clone, Copy)]
pub struct TilePainter {
    heads: usize,
    seq: usize,
    axis: Axis,
    mask: Mask,
    colormap: Colormap,
    diverging: bool,
    shared_scale: Option<Scale>,
}

/// One head's tile, painted and waiting for its place on the grid.
pub struct GridTile {
    layer: usize,
    head: usize,
    canvas: Canvas,
}

impl TilePainter {
    /// Paint one head's `[seq, seq]` map as its tile.
    pub fn paint(&self, layer: usize, head: usize, values: &[f32]) -> Result<GridTile, RenderError> {
        let seq = self.seq;
        let expected = seq * seq;
        if values.len() != expected || head >= self.heads {
            return Err(RenderError::ShapeMismatch { shape: format!("[{seq} queries, {seq} keys] (layer {layer}, head {head} of {})", self.heads), expected, got: values.len() });
        }
        if let Some((row, col)) = matrix::first_non_finite(values, seq, self.mask) {
            return Err(RenderError::NonFiniteInGrid { layer, head, row, col });
        }
        let scale = self.scale_of(values);
        let mut canvas = Canvas::new(self.axis.pixels, self.axis.pixels, BACKGROUND);
        let matrix = Matrix { values, rows: self.axis, cols: self.axis, mask: self.mask };
        matrix::paint(&mut canvas, 0, 0, &matrix, self.colormap.mask_rgb(), |value| self.colormap.rgb(scale.normalise(value)));
        Ok(GridTile { layer, head, canvas })
    }

    fn scale_of(&self, values: &[f32]) -> Scale {
        self.shared_scale.unwrap_or_else(|| visible_scale(std::iter::once(values), self.seq, self.mask, self.diverging))
    }
}

impl GridPng {
    /// An empty grid for `layers` x `heads` tiles of `seq` tokens, its header drawn.
    pub fn new(layers: usize, heads: usize, seq: usize, opts: &GridOptions) -> Result<GridPng, RenderError> {
        GridPng::with_scale(layers, heads, seq, opts, streamed_scale(opts)?)
    }

    fn with_scale(layers: usize, heads: usize, seq: usize, opts: &GridOptions, shared_scale: Option<Scale>) -> Result<GridPng, RenderError> {
        let (mut text, plan) = plan(layers, heads, seq, opts, shared_scale)?;
        let mut raster = Raster::new(plan.width, plan.height, BACKGROUND);
        draw_header(&mut raster, &mut text, &plan.title, plan.subtitle.as_deref());
        Ok(GridPng { plan, text, raster })
    }

    pub fn painter(&self) -> TilePainter {
        let plan = &self.plan;
        TilePainter { heads: plan.heads, seq: plan.seq, axis: plan.axis, mask: plan.mask, colormap: plan.colormap, diverging: plan.diverging, shared_scale: plan.shared_scale }
    }

    /// Put a painted tile in its place (the same pixels painting it there would give).
    pub fn place(&mut self, tile: GridTile) {
        let (x, y) = tile_origin(&self.plan, tile.layer, tile.head);
        let side = self.plan.tile;
        for row in 0..side {
            self.raster.canvas.row_mut(x, y + row, side).copy_from_slice(tile.canvas.row(row));
        }
        self.raster.frame_around(i64::from(x), i64::from(y), i64::from(side), i64::from(side), RULE);
    }

    pub fn finish(mut self) -> Result<Vec<u8>, RenderError> {
        draw_axes(&mut self.raster, &mut self.text, &self.plan);
        self.raster.into_png()
    }
}

/// A grid SVG built one tile at a time, tiles added in `[layer, head]` order.
pub struct GridSvg {
    plan: GridPlan,
    text: Text,
    svg: Svg,
    labels: Vec<String>,
}

impl GridSvg {
    /// An empty grid, its header drawn; see [`GridPng`] for the scales it accepts.
    pub fn new(layers: usize, heads: usize, seq: usize, opts: &GridOptions) -> Result<GridSvg, RenderError> {
        GridSvg::with_scale(layers, heads, seq, opts, streamed_scale(opts)?)
    }

    fn with_scale(layers: usize, heads: usize, seq: usize, opts: &GridOptions, shared_scale: Option<Scale>) -> Result<GridSvg, RenderError> {
        let (mut text, plan) = plan(layers, heads, seq, opts, shared_scale)?;
        let mut svg = Svg::new(plan.width, plan.height, &plan.title);
        if layers.saturating_mul(heads).saturating_mul(seq).saturating_mul(seq) > MAX_RECT_CELLS {
            svg.force_images();
        }
        draw_header(&mut svg, &mut text, &plan.title, plan.subtitle.as_deref());
        Ok(GridSvg { plan, text, svg, labels: opts.labels.to_vec() })
    }

    /// Draw the next head's tile (the SVG's elements follow the order tiles are added in).
    pub fn add(&mut self, layer: usize, head: usize, values: &[f32]) -> Result<(), RenderError> {
        let plan = &self.plan;
        let seq = plan.seq;
        if values.len() != seq * seq {
            return Err(RenderError::ShapeMismatch { shape: format!("[{seq} queries, {seq} keys] (layer {layer}, head {head})"), expected: seq * seq, got: values.len() });
        }
        if let Some((row, col)) = matrix::first_non_finite(values, seq, plan.mask) {
            return Err(RenderError::NonFiniteInGrid { layer, head, row, col });
        }
        let (x, y) = tile_origin(plan, layer, head);
        let scale = plan.shared_scale.unwrap_or_else(|| visible_scale(std::iter::once(values), seq, plan.mask, plan.diverging));
        let matrix = Matrix { values, rows: plan.axis, cols: plan.axis, mask: plan.mask };
        let prefix = format!("layer {layer}, head {head}");
        let names = CellNames { prefix: &prefix, rows: &self.labels, cols: &self.labels };
        self.svg.matrix(x, y, &matrix, plan.colormap, scale, Some(names));
        self.svg.frame_around(i64::from(x), i64::from(y), i64::from(plan.tile), i64::from(plan.tile), RULE);
        Ok(())
    }

    pub fn finish(mut self) -> Vec<u8> {
        draw_axes(&mut self.svg, &mut self.text, &self.plan);
        self.svg.finish()
    }
}

/// The shared scale a grid built tile by tile can have: none (each tile its own) or the fixed one.
fn streamed_scale(opts: &GridOptions) -> Result<Option<Scale>, RenderError> {
    match opts.fixed_scale {
        Some(scale) => Ok(Some(scale)),
        None if opts.scale_per_head => Ok(None),
        None => Err(RenderError::GridScaleUnknown),
    }
}

/// Top-left pixel of a head's tile.
fn tile_origin(plan: &GridPlan, layer: usize, head: usize) -> (u32, u32) {
    (plan.grid_x + head as u32 * plan.pitch, plan.grid_y + layer as u32 * plan.pitch)
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

/// Check a whole grid's values (shape, finite) and find its shared scale, if it has one.
fn check_values(
    values: &[f32],
    layers: usize,
    heads: usize,
    seq: usize,
    opts: &GridOptions,
) -> Result<Option<Scale>, RenderError> {
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
    Ok(if let Some(scale) = opts.fixed_scale {
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
    })
}

/// Measure the grid: every size and place, before anything is drawn.
fn plan(
    layers: usize,
    heads: usize,
    seq: usize,
    opts: &GridOptions,
    shared_scale: Option<Scale>,
) -> Result<(Text, GridPlan), RenderError> {
    if layers == 0 || heads == 0 || seq == 0 {
        return Err(RenderError::Empty { shape: format!("[{layers} layers, {heads} heads, {seq} queries, {seq} keys]") });
    }
    let diverging = opts.colormap.is_diverging();
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

/// Everything around the tiles but the header: layer and head labels, captions, the colour bar.
fn draw_axes(surface: &mut dyn Surface, text: &mut Text, plan: &GridPlan) {
    let GridPlan { tile, pitch, tiles_width, tiles_height, grid_x, grid_y, head_caption_y, head_labels_y, .. } = *plan;
    let line_height = LABEL_PX.ceil() as i64;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid as it was drawn before tiles were streamed (issue 10): every tile painted in
    /// place from the whole `[layers, heads, seq, seq]` array, between the header and the axes.
    fn reference_png(values: &[f32], layers: usize, heads: usize, seq: usize, opts: &GridOptions) -> Vec<u8> {
        let shared_scale = check_values(values, layers, heads, seq, opts).unwrap();
        let (mut text, plan) = plan(layers, heads, seq, opts, shared_scale).unwrap();
        let mut raster = Raster::new(plan.width, plan.height, BACKGROUND);
        draw_header(&mut raster, &mut text, &plan.title, plan.subtitle.as_deref());
        for (index, tile_values) in values.chunks_exact(seq * seq).enumerate() {
            let (layer, head) = (index / heads, index % heads);
            let x = plan.grid_x + head as u32 * plan.pitch;
            let y = plan.grid_y + layer as u32 * plan.pitch;
            let scale = plan.shared_scale.unwrap_or_else(|| visible_scale(std::iter::once(tile_values), seq, plan.mask, plan.diverging));
            let matrix = Matrix { values: tile_values, rows: plan.axis, cols: plan.axis, mask: plan.mask };
            raster.matrix(x, y, &matrix, plan.colormap, scale, None);
            raster.frame_around(i64::from(x), i64::from(y), i64::from(plan.tile), i64::from(plan.tile), RULE);
        }
        draw_axes(&mut raster, &mut text, &plan);
        raster.into_png().unwrap()
    }

    /// Softmax-like rows of pseudo-random numbers, `[layers, heads, seq, seq]`.
    fn maps(layers: usize, heads: usize, seq: usize) -> Vec<f32> {
        let mut values: Vec<f32> = (0..layers * heads * seq * seq).map(|i| ((i as u64 * 2654435761 % 1000) as f32 / 1000.0).powi(3)).collect();
        for row in values.chunks_mut(seq) {
            let sum: f32 = row.iter().sum::<f32>().max(1e-6);
            row.iter_mut().for_each(|v| *v /= sum);
        }
        values
    }

    /// Tiles painted apart (in any order, as a dump's layers pass) give the old picture's bytes:
    /// thumbnails, pooled tiles (more tokens than pixels), a causal mask, a fixed and a diverging scale.
    #[test]
    fn tiles_placed_one_by_one_give_the_old_grid_bytes() {
        let labels: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
        for (layers, heads, seq, mask, fixed, colormap) in [
            (2, 3, 5, Mask::None, None, Colormap::Viridis),
            (3, 2, 9, Mask::Causal, Some(Scale::Range { min: 0.0, max: 1.0 }), Colormap::Magma),
            (2, 2, 300, Mask::None, None, Colormap::RdBu),
            (40, 40, 4, Mask::Causal, None, Colormap::Viridis),
        ] {
            let values = maps(layers, heads, seq);
            let opts = GridOptions { title: "tiny · every head", mask, fixed_scale: fixed, colormap, labels: &labels[..seq], ..GridOptions::default() };
            let reference = reference_png(&values, layers, heads, seq, &opts);
            assert!(grid_png(&values, layers, heads, seq, &opts).unwrap() == reference, "{layers}x{heads}x{seq}: grid_png differs");
            let mut grid = GridPng::new(layers, heads, seq, &opts).unwrap();
            let painter = grid.painter();
            // Last layer first: the order tiles arrive in must not matter.
            for index in (0..layers * heads).rev() {
                grid.place(painter.paint(index / heads, index % heads, &values[index * seq * seq..(index + 1) * seq * seq]).unwrap());
            }
            assert!(grid.finish().unwrap() == reference, "{layers}x{heads}x{seq}: tiles placed one by one differ");
        }
    }

    /// One scale over every tile is only known at the end: the tile-by-tile grid refuses it.
    #[test]
    fn a_shared_data_scale_is_refused_tile_by_tile() {
        let opts = GridOptions { scale_per_head: false, ..GridOptions::default() };
        assert!(matches!(GridPng::new(1, 1, 2, &opts), Err(RenderError::GridScaleUnknown)));
        assert!(grid_png(&maps(1, 2, 3), 1, 2, 3, &opts).is_ok());
    }

    #[test]
    fn a_tile_with_nan_names_its_head() {
        let grid = GridPng::new(2, 2, 3, &GridOptions::default()).unwrap();
        let mut values = maps(1, 1, 3);
        values[4] = f32::NAN;
        match grid.painter().paint(1, 1, &values) {
            Err(RenderError::NonFiniteInGrid { layer: 1, head: 1, row: 1, col: 1 }) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
