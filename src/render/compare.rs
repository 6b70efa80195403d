//! Two versions of one head side by side, with their difference: the picture
//! `attnmap diff --out` writes for each of the most-changed heads.
//!
//! Old and new share one colour scale so they can be compared by eye; the
//! difference (new - old) uses a diverging colormap centred on 0.

use image::{ImageFormat, RgbImage};

use super::{heatmap_png, Colormap, HeatmapOptions, Mask, RenderError, Scale};

/// What to draw: one head of two versions over the same tokens.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions<'a> {
    pub title_old: &'a str,
    pub title_new: &'a str,
    pub title_diff: &'a str,
    pub labels: &'a [String],
    pub colormap: Colormap,
    pub mask: Mask,
    /// Old and new on 0..1 (`--scale fixed`) instead of 0..the larger of their maxima.
    pub fixed_scale: bool,
}

/// `[old | new | new - old]` as one PNG. `old` and `new` are `[seq, seq]` row-major.
pub fn compare_png(old: &[f32], new: &[f32], seq: usize, opts: &CompareOptions) -> Result<Vec<u8>, RenderError> {
    if old.len() != new.len() {
        return Err(RenderError::ShapeMismatch { shape: format!("[{seq}, {seq}]"), expected: old.len(), got: new.len() });
    }
    let shared = if opts.fixed_scale {
        Scale::Range { min: 0.0, max: 1.0 }
    } else {
        let both: Vec<f32> = old.iter().chain(new).copied().collect();
        Scale::zero_to_max(&both)
    };
    let difference: Vec<f32> = new.iter().zip(old).map(|(n, o)| n - o).collect();
    let panel = |values: &[f32], title: &str, colormap: Colormap, scale: Scale, label: &str| {
        heatmap_png(
            values,
            seq,
            seq,
            &HeatmapOptions {
                title,
                row_labels: opts.labels,
                col_labels: opts.labels,
                colormap,
                scale,
                mask: opts.mask,
                colorbar_label: label,
                ..HeatmapOptions::default()
            },
        )
    };
    let panels = [
        panel(old, opts.title_old, opts.colormap, shared, "attention weight")?,
        panel(new, opts.title_new, opts.colormap, shared, "attention weight")?,
        panel(&difference, opts.title_diff, Colormap::RdBu, Scale::symmetric(&difference), "new - old")?,
    ];
    let images = panels
        .iter()
        .map(|png| image::load_from_memory_with_format(png, ImageFormat::Png).map(|i| i.to_rgb8()))
        .collect::<Result<Vec<RgbImage>, _>>()?;
    let width = images.iter().map(|i| i.width()).sum::<u32>();
    let height = images.iter().map(|i| i.height()).max().unwrap_or(1);
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb(super::style::BACKGROUND));
    let mut left = 0;
    for panel in &images {
        image::imageops::replace(&mut canvas, panel, i64::from(left), 0);
        left += panel.width();
    }
    let mut bytes = Vec::new();
    canvas.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)?;
    Ok(bytes)
}
