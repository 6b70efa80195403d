//! Models with attention hooks: one file per architecture family, plus the
//! shared attention core and weight loading.

pub mod attention;
pub mod bert;
pub mod gguf;
mod gguf_tokenizer;
pub mod llama;
mod weights;

use candle_core::Tensor;
use candle_nn::{LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hooks::HookSink;
use crate::source::{ModelFiles, Weights};
use crate::tokenize::{Encoded, TextTokenizer};

/// The `model_type` values attnmap can load.
pub const SUPPORTED: &[&str] = &["bert", "llama", "mistral", "qwen2"];

/// What a user needs to know to ask for a map: the valid layer and head ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchInfo {
    pub family: &'static str,
    pub layers: usize,
    /// Query heads: one map each.
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub max_positions: usize,
    pub vocab_size: usize,
    /// Decoder (causal) attention: the upper triangle of every map is masked.
    pub causal: bool,
}

/// A transformer whose forward pass reports its hook points.
pub trait AttentionModel: Send + Sync {
    fn info(&self) -> &ArchInfo;
    /// Run one input; hook values go to `sink`. Returns the last hidden states
    /// `[seq, hidden]` (of the last layer run, if the sink let it stop early).
    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor>;
}

/// A loaded model and its tokenizer.
pub struct Loaded {
    pub model: Box<dyn AttentionModel>,
    pub tokenizer: TextTokenizer,
    /// config.json's `model_type`, or a GGUF file's `general.architecture`.
    pub model_type: String,
    /// How the weights are computed with, e.g. "f32" or "f32, dequantized from the file's Q4_1 x210, ...".
    pub precision: String,
}

/// How to load a model (what the command line can change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// For a GGUF file: run candle's quantized matmuls on the file's blocks
    /// instead of dequantizing to f32 (less memory, faster for the types candle
    /// has SIMD kernels for; the maps then differ slightly).
    pub quantized: bool,
}

#[derive(Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

/// Load the model and tokenizer that `files` point to, with default options.
pub fn load(files: &ModelFiles) -> Result<Loaded> {
    load_with(files, &LoadOptions::default())
}

/// Load the model and tokenizer that `files` point to.
pub fn load_with(files: &ModelFiles, options: &LoadOptions) -> Result<Loaded> {
    if let Weights::Gguf(path) = &files.weights {
        return gguf::load(path, options);
    }
    if options.quantized {
        return Err(Error::Usage(format!(
            "--quantized needs a .gguf model; {} holds {} weights, which are always computed in f32",
            files.id,
            files.weights.format()
        )));
    }
    let text = std::fs::read_to_string(&files.config)
        .map_err(|e| Error::model_file(&files.config, format!("cannot be read: {e}")))?;
    let bad_config = |e: serde_json::Error| Error::model_file(&files.config, format!("is not a valid config: {e}"));
    let model_type = serde_json::from_str::<ModelType>(&text)
        .map_err(bad_config)?
        .model_type
        .ok_or_else(|| Error::model_file(&files.config, "has no model_type; it must be a transformers config.json"))?;
    let weights_error = |e: Error| match e {
        // A tensor that is missing or mis-shaped means these weights are not this architecture.
        Error::Compute(inner) => Error::model_file(
            files.weights.files()[0],
            format!("does not hold {model_type} weights as config.json describes ({})", crate::error::first_line(&inner)),
        ),
        other => other,
    };
    match (model_type.as_str(), llama::Family::from_model_type(&model_type)) {
        ("bert", _) => {
            let config: bert::Config = serde_json::from_str(&text).map_err(bad_config)?;
            check_geometry(files, config.hidden_size, config.num_attention_heads, config.num_hidden_layers)?;
            if let Some(kind) = config.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
                return Err(Error::model_file(&files.config, format!("position_embedding_type {kind:?} is not supported (only \"absolute\")")));
            }
            let tokenizer = TextTokenizer::from_file(&files.tokenizer, config.max_position_embeddings)?;
            let vb = weights::var_builder(&files.weights)?;
            let model = bert::Bert::load(&config, vb).map_err(weights_error)?;
            Ok(Loaded { model: Box::new(model), tokenizer, model_type, precision: "f32".into() })
        }
        (_, Some(family)) => {
            let config = llama::Config::from_json(&text, family).map_err(|message| Error::model_file(&files.config, message))?;
            let tokenizer = TextTokenizer::from_file(&files.tokenizer, config.max_positions)?;
            let tensors = llama::Tensors { dense: weights::var_builder(&files.weights)?, quantized: Default::default() };
            let model = llama::Llama::load(&config, tensors).map_err(weights_error)?;
            Ok(Loaded { model: Box::new(model), tokenizer, model_type, precision: "f32".into() })
        }
        (other, None) => Err(Error::UnsupportedArchitecture {
            found: other.to_string(),
            path: files.config.clone(),
            supported: SUPPORTED.join(", "),
        }),
    }
}

fn check_geometry(files: &ModelFiles, hidden: usize, heads: usize, layers: usize) -> Result<()> {
    if heads == 0 || layers == 0 || hidden % heads != 0 {
        return Err(Error::model_file(
            &files.config,
            format!("has an impossible shape: hidden_size {hidden}, {heads} heads, {layers} layers (hidden_size must be a positive multiple of the head count)"),
        ));
    }
    Ok(())
}

/// A linear layer with bias, shapes checked against the file.
pub(crate) fn linear(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(candle_nn::linear(input, output, vb)?)
}

/// A LayerNorm stored as weight/bias, or as gamma/beta in old TF-converted checkpoints.
pub(crate) fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    if vb.contains_tensor("weight") {
        return Ok(candle_nn::layer_norm(size, eps, vb)?);
    }
    let weight = vb.get(size, "gamma")?;
    let bias = vb.get(size, "beta")?;
    Ok(LayerNorm::new(weight, bias, eps))
}
