//! The render room: plain attention numbers and token labels in, bytes out
//! (PNG, SVG, JSON, terminal text, a self-contained HTML viewer).
//!
//! Nothing here knows about models or tensors: a heatmap is a row-major `&[f32]`
//! (query tokens down, key tokens across) plus its labels, so every picture can be
//! tested without loading a model. Text uses the embedded Noto Sans (OFL, see
//! `assets/fonts/`), so the same input gives the same bytes on every machine;
//! only characters Noto Sans lacks are drawn from the system's fonts (see
//! `fallback`), and where no font has them, as `U+XXXX`.

mod base64;
mod canvas;
mod fallback;
mod colorbar;
pub mod colormap;
pub mod compare;
mod colormap_tables;
pub mod grid;
pub mod heatmap;
pub mod html;
pub mod json;
pub mod marks;
pub mod report;
pub mod heads_report;
pub mod find_report;
mod matrix;
mod png;
mod scale;
mod surface;
pub mod svg;
pub mod terminal;
mod text;

pub use colormap::Colormap;
pub use compare::{compare_png, CompareOptions};
pub use grid::{grid_png, grid_svg, GridOptions, GridPng, GridSvg, GridTile, TilePainter};
pub use heatmap::{heatmap_png, heatmap_svg, HeatmapFrame, HeatmapOptions, Layout, Mask, Scale};
pub use marks::{mark_cells, CellMark};

/// Why a picture could not be drawn. Each message names what the caller gave.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A value the picture would have to show is NaN or infinite. Drawing it as
    /// some colour would lie, so the caller must clean or mask it first.
    #[error("attention value at query {row}, key {col} is not finite; a NaN or infinity cannot be coloured honestly (mask that cell or fix the capture)")]
    NonFinite { row: usize, col: usize },

    /// Same as [`RenderError::NonFinite`], inside one head of a grid.
    #[error("attention value at layer {layer}, head {head}, query {row}, key {col} is not finite; a NaN or infinity cannot be coloured honestly (mask that cell or fix the capture)")]
    NonFiniteInGrid {
        layer: usize,
        head: usize,
        row: usize,
        col: usize,
    },

    /// The slice length does not match the shape the caller described.
    #[error("got {got} values but the shape {shape} needs {expected}")]
    ShapeMismatch {
        shape: String,
        expected: usize,
        got: usize,
    },

    /// A grid drawn tile by tile has each tile's own scale or a fixed one: a scale over
    /// every tile is not known until the last tile.
    #[error("a grid drawn tile by tile needs each tile's own colour scale or a fixed one; one scale over every tile needs them all first (use grid_png)")]
    GridScaleUnknown,

    /// A picture needs at least one cell.
    #[error("nothing to draw: the shape {shape} has no cells")]
    Empty { shape: String },

    /// Labels must be one per token, or none at all (then indices are used).
    #[error(
        "got {got} {axis} labels for {expected} {axis} tokens; pass one label per token or none"
    )]
    LabelCount {
        axis: &'static str,
        expected: usize,
        got: usize,
    },

    /// The colour scale must be a finite interval.
    #[error("colour scale {min}..{max} is not a finite range with min <= max")]
    InvalidScale { min: f32, max: f32 },

    /// A colormap name that is not one of [`Colormap::NAMES`].
    #[error("unknown colormap `{name}`; choose one of: {}", Colormap::NAMES.join(", "))]
    UnknownColormap { name: String },

    /// The embedded font could not be parsed: the build itself is broken.
    #[error("the embedded font assets/fonts/NotoSans-Regular.ttf is unreadable: {0}")]
    Font(#[from] ab_glyph::InvalidFont),

    /// The PNG encoder failed.
    #[error("could not encode the PNG: {0}")]
    Png(#[from] image::ImageError),
}

/// Colours and spacing shared by every picture, so heatmaps and grids match.
mod style {
    pub const BACKGROUND: [u8; 3] = [255, 255, 255];
    /// Dark grey rather than black: softer next to saturated colormaps.
    pub const INK: [u8; 3] = [51, 51, 51];
    pub const MUTED_INK: [u8; 3] = [110, 110, 110];
    /// Tick marks and frames: visible on white without competing with the data.
    pub const RULE: [u8; 3] = [150, 150, 150];
    pub const MARGIN: u32 = 20;

    /// Text sizes are line heights in pixels (ab_glyph's `PxScale` is
    /// ascent - descent), so a size is also the vertical room a line needs.
    pub const TITLE_PX: f32 = 24.0;
    pub const SUBTITLE_PX: f32 = 17.0;
    pub const CAPTION_PX: f32 = 17.0;
    pub const LABEL_PX: f32 = 16.0;
    pub const TICK_PX: f32 = 16.0;

    pub const TICK_LEN: u32 = 4;
    pub const TICK_GAP: u32 = 4;
    /// Longest token label before it is cut with an ellipsis.
    pub const LABEL_MAX_WIDTH: f32 = 150.0;
}
