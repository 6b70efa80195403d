//! What `show` and `dump` share to draw a view (norm, rollout, flow; tokens or words):
//! the command-line view's library name, a map's axis labels, and its picture.

use crate::analysis::views::View;
use crate::analysis::words::{self, Word};
use crate::capture::Capture;
use crate::cli::{ScaleArg, StyleArgs, ViewArg};
use crate::error::Result;
use crate::render::{self, Colormap, HeatmapOptions, Mask, Scale};

pub fn view_of(arg: ViewArg) -> View {
    match arg {
        ViewArg::Weights => View::Weights,
        ViewArg::Norm => View::Norm,
        ViewArg::Rollout => View::Rollout,
        ViewArg::Flow => View::Flow,
    }
}

/// The axis a map is drawn over: tokens, or words merged from them.
pub struct Axis {
    pub labels: Vec<String>,
    /// The words when maps are merged (`--words`), `None` for tokens.
    pub words: Option<Vec<Word>>,
}

impl Axis {
    pub fn of(capture: &Capture, merge_words: bool) -> Axis {
        if merge_words {
            let words = words::words(&capture.input);
            Axis { labels: words::labels(&words), words: Some(words) }
        } else {
            Axis { labels: capture.input.labels.clone(), words: None }
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn unit(&self) -> &'static str {
        if self.words.is_some() { "words" } else { "tokens" }
    }

    /// A `[seq, seq]` token map (or a stack of them) on this axis.
    pub fn merge(&self, maps: &[f32], seq: usize) -> Vec<f32> {
        match &self.words {
            Some(words) => words::merge_maps(maps, seq, words),
            None => maps.to_vec(),
        }
    }

    /// The word spans, for manifests and JSON.
    pub fn describe(&self) -> Option<serde_json::Value> {
        self.words.as_ref().map(|words| {
            serde_json::Value::Array(
                words.iter().map(|w| serde_json::json!({"label": w.label, "tokens": [w.tokens.start, w.tokens.end], "special": w.special})).collect(),
            )
        })
    }
}

/// The colour range of a view's map: `auto` is 0..the map's maximum; `fixed` is 0..1 for the
/// shares (weights, rollout, flow) and 0..`fixed_max` for norm, which has no natural maximum.
pub fn scale_of(view: View, values: &[f32], style: &StyleArgs, fixed_max: f32) -> Scale {
    match (style.scale, view) {
        (ScaleArg::Auto, _) => Scale::zero_to_max(values),
        (ScaleArg::Fixed, View::Norm) => Scale::Range { min: 0.0, max: fixed_max.max(f32::MIN_POSITIVE) },
        (ScaleArg::Fixed, _) => Scale::Range { min: 0.0, max: 1.0 },
    }
}

/// One `[side, side]` map of a view as a PNG: the title and the colour bar say which view.
#[allow(clippy::too_many_arguments)]
pub fn picture(values: &[f32], axis: &Axis, causal: bool, view: View, title: &str, dropped: usize, scale: Scale, style: &StyleArgs) -> Result<Vec<u8>> {
    let truncated = if dropped > 0 { format!(" (truncated, {dropped} dropped)") } else { String::new() };
    let subtitle = format!("{} {}{truncated} · {}", axis.len(), axis.unit(), view.caveat());
    let side = axis.len();
    let (row_caption, col_caption) = match view {
        View::Rollout | View::Flow => ("output position", "input token"),
        _ => ("query", "key"),
    };
    let options = HeatmapOptions {
        title,
        subtitle: Some(&subtitle),
        row_labels: &axis.labels,
        col_labels: &axis.labels,
        colormap: Colormap::from_name(&style.colormap).unwrap_or(Colormap::Viridis),
        scale,
        mask: if causal { Mask::Causal } else { Mask::None },
        colorbar_label: view.colorbar_label(),
        row_caption,
        col_caption,
    };
    Ok(render::heatmap_png(values, side, side, &options)?)
}
