//! `attnmap info`: what a model is and which layers and heads it has.

use crate::cli::InfoArgs;
use crate::error::Result;
use crate::ui::Ui;

use super::find_model;
use crate::model::{describe, LoadOptions};

/// Reads config.json or the GGUF header only: never the weights or the tokenizer,
/// so it is instant on any model and tells nothing about whether the weights load.
pub fn run(args: &InfoArgs, ui: &Ui) -> Result<()> {
    let files = find_model(&args.model, ui)?;
    let description = describe(&files, &LoadOptions { quantized: args.model.quantized })?;
    let info = &description.info;
    let files = &files;
    let mut out = String::new();
    out += &format!("model          {}\n", files.id);
    if let Some(revision) = &files.revision {
        out += &format!("revision       {revision}{}\n", files.commit.as_deref().map(|c| format!(" ({c})")).unwrap_or_default());
    }
    out += &format!("loaded from    {}\n", files.location().display());
    out += &format!("weights        {}, {}\n", files.weights.format(), description.precision);
    out += &format!("architecture   {} ({})\n", description.model_type, if info.causal { "decoder, causal attention" } else { "encoder, bidirectional attention" });
    out += &format!("layers         {} (--layer 0-{})\n", info.layers, info.layers - 1);
    out += &format!("query heads    {} per layer (--head 0-{})\n", info.heads, info.heads - 1);
    out += &format!("kv heads       {}\n", info.kv_heads);
    out += &format!("head dim       {}\n", info.head_dim);
    out += &format!("hidden size    {}\n", info.hidden);
    out += &format!("max positions  {}\n", info.max_positions);
    out += &format!("vocab size     {}\n", info.vocab_size);
    crate::output::write_stdout(out.as_bytes())
}
