//! One map as JSON (a head's weights, or any view of it, at token or word level):
//! tokens, ids and rows of numbers, for scripts that would rather not read .npy.

use serde::Serialize;

/// What a head's JSON says about where it came from.
#[derive(Debug, Clone, Copy)]
pub struct HeadJson<'a> {
    pub model: &'a str,
    pub layer: usize,
    pub head: usize,
    pub tokens: &'a [String],
    pub ids: &'a [u32],
}

/// Keys in alphabetical order: the order this file has always had.
#[derive(Serialize)]
struct Document<'a> {
    /// f64: the digits this file has always had (each f32 widened exactly).
    attention: Vec<Vec<f64>>,
    head: usize,
    hook: String,
    ids: &'a [u32],
    layer: usize,
    model: &'a str,
    tokens: &'a [String],
}

/// `values` is row-major `[seq, seq]`; rows become JSON arrays. Pretty-printed, newline-terminated.
pub fn head_json(values: &[f32], seq: usize, meta: &HeadJson) -> Vec<u8> {
    let document = Document {
        attention: values.chunks(seq.max(1)).map(|row| row.iter().map(|&v| f64::from(v)).collect()).collect(),
        head: meta.head,
        hook: format!("blocks.{}.attn.hook_pattern", meta.layer),
        ids: meta.ids,
        layer: meta.layer,
        model: meta.model,
        tokens: meta.tokens,
    };
    // Serialising plain strings and finite floats cannot fail; NaN becomes null.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// What a view's JSON says about where its numbers came from.
#[derive(Debug, Clone, Copy)]
pub struct ViewJson<'a> {
    pub model: &'a str,
    pub layer: usize,
    /// `None` for views that mix every head (rollout, flow).
    pub head: Option<usize>,
    pub view: &'a str,
    pub formula: &'a str,
    pub hook: &'a str,
    pub tokens: &'a [String],
    pub ids: &'a [u32],
    /// One per row/column: tokens' or words' labels.
    pub labels: &'a [String],
    /// At word level, each word's label, token range and special flag.
    pub words: Option<&'a serde_json::Value>,
}

/// Keys in alphabetical order, as the file has always had them.
#[derive(Serialize)]
struct ViewDocument<'a> {
    formula: &'a str,
    head: Option<usize>,
    hook: &'a str,
    ids: &'a [u32],
    labels: &'a [String],
    layer: usize,
    model: &'a str,
    tokens: &'a [String],
    /// f64, as in [`head_json`]: each f32 widened exactly, the digits this file has always had.
    values: Vec<Vec<f64>>,
    view: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<&'a serde_json::Value>,
}

/// `values` is row-major `[side, side]`; rows become JSON arrays. Pretty-printed, newline-terminated.
pub fn view_json(values: &[f32], side: usize, meta: &ViewJson) -> Vec<u8> {
    let document = ViewDocument {
        formula: meta.formula,
        head: meta.head,
        hook: meta.hook,
        ids: meta.ids,
        labels: meta.labels,
        layer: meta.layer,
        model: meta.model,
        tokens: meta.tokens,
        values: values.chunks(side.max(1)).map(|row| row.iter().map(|&v| f64::from(v)).collect()).collect(),
        view: meta.view,
        words: meta.words,
    };
    // As head_json: plain strings and finite floats cannot fail to serialise.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}
