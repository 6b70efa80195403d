//! The interactive viewer: one self-contained HTML file (assets/view.html)
//! holding every head of a dump, drawn by the browser on canvases.
//!
//! Nothing is fetched: the page's Content Security Policy forbids network
//! access, and the data sits in the file. Each map is packed as one byte per
//! weight, `code = round(weight / map_max * 255)`, with `map_max` (the map's
//! largest weight, or 1 for an all-zero map) kept beside it, so a decoded
//! weight `code * map_max / 255` is within `map_max / 510 <= 1/510` of the
//! original. Each map is one base64 string, maps in `[layer, head]` order,
//! so the page decodes the map it shows first and the rest while it is seen. Tokens travel in JSON and are inserted as text,
//! never as markup.

use std::borrow::Cow;

use serde::Serialize;

use super::colormap::{rgb_hex, Colormap};
use super::RenderError;

static TEMPLATE: &str = include_str!("../../assets/view.html");
const DATA_SLOT: &str = "/*ATTNMAP_DATA*/";

/// Most bytes of packed weights one page holds (about 53 MB once in base64):
/// 512 tokens x 72 heads with two more views of every head still fit.
pub const MAX_CODES: usize = 40_000_000;

/// One kind of map (weights, norm, rollout) over some layers and heads.
pub struct View<'a> {
    /// Short name for the switch: "weights", "norm", "rollout".
    pub name: String,
    /// What its numbers are, for the legend.
    pub description: String,
    /// The layer and head numbers shown (a narrowed page keeps the model's own numbers).
    pub layers: Vec<usize>,
    /// Head names; "all" for views with one map per layer.
    pub heads: Vec<String>,
    /// `[layers.len(), heads.len(), seq, seq]`, as numbers or already packed.
    pub maps: Maps<'a>,
}

/// A view's maps: row-major numbers, or packed one map at a time as they were computed
/// (a dump streaming its layers never holds every map as f32).
pub enum Maps<'a> {
    Values(&'a [f32]),
    Packed(&'a PackedMaps),
}

/// Maps packed as the page holds them, `[layer, head]` order; see [`pack`].
#[derive(Debug, Default, Clone)]
pub struct PackedMaps {
    scales: Vec<f32>,
    codes: Vec<String>,
}

impl PackedMaps {
    /// Pack the next map (`[seq, seq]`); a NaN or infinity is refused, naming its place.
    pub fn push(&mut self, layer: usize, head: usize, map: &[f32], seq: usize) -> Result<(), RenderError> {
        if let Some(position) = map.iter().position(|v| !v.is_finite()) {
            return Err(RenderError::NonFiniteInGrid { layer, head, row: position / seq.max(1), col: position % seq.max(1) });
        }
        let (scale, codes) = pack(map);
        self.scales.push(scale);
        self.codes.push(super::base64::encode(&codes));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// Everything the page shows.
pub struct Page<'a> {
    pub title: String,
    pub subtitle: String,
    /// Display labels, one per token (drawn; a token's own text is in `tokens`).
    pub labels: &'a [String],
    /// The tokenizer's token strings.
    pub tokens: &'a [String],
    pub seq: usize,
    pub causal: bool,
    pub colormap: Colormap,
    /// "max" (0..each map's maximum) or "fixed" (0..1): the page's starting scale.
    pub scale: &'static str,
    /// The "reading maps honestly" note, shown on the page.
    pub note: &'a str,
    pub views: Vec<View<'a>>,
}

#[derive(Serialize)]
struct PageData<'a> {
    format: u32,
    title: &'a str,
    subtitle: &'a str,
    labels: &'a [String],
    tokens: &'a [String],
    seq: usize,
    causal: bool,
    colormap: &'static str,
    /// 256 colours, "rrggbb" each, concatenated: entry i is the colour of t = i / 255.
    lut: String,
    mask: String,
    scale: &'static str,
    note: &'a str,
    views: Vec<ViewData<'a>>,
}

#[derive(Serialize)]
struct ViewData<'a> {
    name: String,
    description: String,
    layers: Vec<usize>,
    heads: Vec<String>,
    /// Per map: the weight code 255 stands for.
    scales: Cow<'a, [f32]>,
    /// Per map: base64 of its codes, `[query, key]` row-major.
    codes: Cow<'a, [String]>,
}

/// Bytes of packed weights `page` needs, to check against [`MAX_CODES`] before building it.
pub fn packed_size(seq: usize, maps: usize) -> usize {
    seq.saturating_mul(seq).saturating_mul(maps)
}

/// The page as HTML bytes.
pub fn view_html(page: &Page) -> Result<Vec<u8>, RenderError> {
    let map_len = page.seq * page.seq;
    if map_len == 0 {
        return Err(RenderError::Empty { shape: format!("[{} queries, {} keys]", page.seq, page.seq) });
    }
    let mut views = Vec::with_capacity(page.views.len());
    for view in &page.views {
        let maps = view.layers.len() * view.heads.len();
        let values = match &view.maps {
            Maps::Packed(packed) if packed.len() == maps => {
                views.push(ViewData {
                    name: view.name.clone(),
                    description: view.description.clone(),
                    layers: view.layers.clone(),
                    heads: view.heads.clone(),
                    scales: Cow::Borrowed(&packed.scales),
                    codes: Cow::Borrowed(&packed.codes),
                });
                continue;
            }
            Maps::Packed(packed) => {
                return Err(RenderError::ShapeMismatch {
                    shape: format!("[{} layers, {} heads] packed maps ({})", view.layers.len(), view.heads.len(), view.name),
                    expected: maps,
                    got: packed.len(),
                })
            }
            Maps::Values(values) => values,
        };
        if values.len() != maps * map_len {
            return Err(RenderError::ShapeMismatch {
                shape: format!("[{} layers, {} heads, {} queries, {} keys] ({})", view.layers.len(), view.heads.len(), page.seq, page.seq, view.name),
                expected: maps * map_len,
                got: values.len(),
            });
        }
        let mut packed = PackedMaps::default();
        for (index, map) in values.chunks_exact(map_len).enumerate() {
            packed.push(view.layers[index / view.heads.len()], index % view.heads.len(), map, page.seq)?;
        }
        views.push(ViewData {
            name: view.name.clone(),
            description: view.description.clone(),
            layers: view.layers.clone(),
            heads: view.heads.clone(),
            scales: Cow::Owned(packed.scales),
            codes: Cow::Owned(packed.codes),
        });
    }
    let lut: String = (0..256).map(|i| rgb_hex(page.colormap.rgb(i as f32 / 255.0))).collect();
    let data = PageData {
        format: 1,
        title: &page.title,
        subtitle: &page.subtitle,
        labels: page.labels,
        tokens: page.tokens,
        seq: page.seq,
        causal: page.causal,
        colormap: page.colormap.name(),
        lut,
        mask: rgb_hex(page.colormap.mask_rgb()),
        scale: page.scale,
        note: page.note,
        views,
    };
    let json = serde_json::to_string(&data).unwrap_or_default();
    drop(data);
    Ok(fill(TEMPLATE, &json).into_bytes())
}

/// Packs one map: its scale (the largest value, 1 when nothing is above 0) and one byte per value.
/// Values below 0 (none in attention; possible in other views) are clamped to 0.
pub fn pack(map: &[f32]) -> (f32, Vec<u8>) {
    let max = map.iter().copied().fold(0.0_f32, f32::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let codes = map.iter().map(|&v| ((v / scale).clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    (scale, codes)
}

/// JSON that can sit inside a `<script>` element: `<` can never close it (nor
/// open a comment), because it only occurs inside strings and is written as an escape there.
#[cfg(test)]
fn script_safe(json: &str) -> String {
    let mut safe = String::with_capacity(json.len());
    push_script_safe(&mut safe, json);
    safe
}

/// [`script_safe`] appended to `out`, in one pass (a page's JSON is up to ~53 MB: no copies).
fn push_script_safe(out: &mut String, json: &str) {
    let mut rest = json;
    while let Some(at) = rest.find(['<', '>', '&']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            _ => "\\u0026",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// The template with the page's JSON, made script-safe, in its data slot.
fn fill(template: &str, json: &str) -> String {
    match template.split_once(DATA_SLOT) {
        Some((before, after)) => {
            let mut page = String::with_capacity(before.len() + json.len() + json.len() / 64 + after.len());
            page.push_str(before);
            push_script_safe(&mut page, json);
            page.push_str(after);
            page
        }
        None => template.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_weights_are_within_half_a_step() {
        let map = [0.0, 0.1, 0.25, 0.5, 0.123456, 0.6];
        let (scale, codes) = pack(&map);
        assert_eq!(scale, 0.6);
        for (value, code) in map.iter().zip(&codes) {
            let decoded = f32::from(*code) * scale / 255.0;
            assert!((decoded - value).abs() <= scale / 510.0 + 1e-7, "{value} -> {decoded}");
        }
        assert_eq!(pack(&[0.0, 0.0]), (1.0, vec![0, 0]));
    }

    #[test]
    fn json_in_a_script_cannot_close_it() {
        let safe = script_safe(r#"{"t":"</script><!--&amp;"}"#);
        assert!(!safe.contains('<') && !safe.contains('>') && !safe.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["t"], "</script><!--&amp;");
    }

    #[test]
    fn the_template_has_one_data_slot_and_no_network() {
        assert_eq!(TEMPLATE.matches(DATA_SLOT).count(), 1);
        assert!(TEMPLATE.contains("Content-Security-Policy"));
        assert!(!TEMPLATE.contains("http://") && !TEMPLATE.contains("https://") && !TEMPLATE.contains("//cdn"));
    }
}
