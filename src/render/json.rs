//! One head's map as JSON: tokens, ids and rows of weights, for scripts that
//! would rather not read .npy.

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
