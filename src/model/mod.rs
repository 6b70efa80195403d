//! Models with attention hooks: one file per architecture family, plus the
//! shared attention core and weight loading.

pub mod attention;
pub mod bert;
mod blocks;
pub mod dense;
pub mod distilbert;
pub mod gguf;
mod gguf_tokenizer;
pub mod gpt2;
pub mod gpt_neox;
pub mod kernels;
pub mod llama;
pub mod matmul;
pub mod rotary;
pub(crate) mod weights;

use candle_core::Tensor;
use candle_nn::{LayerNorm, Linear, VarBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hooks::HookSink;
use crate::source::{ModelFiles, Weights};
use crate::tokenize::{Encoded, TextTokenizer};

/// The `model_type` values attnmap can load.
pub const SUPPORTED: &[&str] =
    &["bert", "roberta", "xlm-roberta", "camembert", "distilbert", "gpt2", "gpt_neox", "llama", "mistral", "qwen2"];

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
    /// The most tokens one input may have (what the tokenizer truncates at).
    pub max_positions: usize,
    pub vocab_size: usize,
    /// Decoder (causal) attention: the upper triangle of every map is masked.
    pub causal: bool,
}

/// A transformer whose forward pass reports its hook points.
pub trait AttentionModel: Send + Sync {
    fn info(&self) -> &ArchInfo;
    /// Run one input; hook values go to `sink`. Returns the last hidden states
    /// `[seq, hidden]`, as transformers' `last_hidden_state` (after the final
    /// LayerNorm where the architecture has one), or, if the sink let it stop
    /// early, the residual stream after the last layer run.
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
    /// Where the files disagree with each other without making the maps impossible (more
    /// layers of weights than the config says, a tokenizer of another vocabulary size):
    /// said on stderr by the commands.
    pub warnings: Vec<String>,
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

/// A parsed config.json of one architecture: what the tokenizer must know, and how to build
/// the model from weights.
trait Architecture {
    /// The layer and head ranges the config describes (what `info` prints; no weights needed).
    fn info(&self) -> ArchInfo;
    /// Refuse what transformers would refuse or attnmap cannot follow; the message names the field.
    fn check(&self) -> std::result::Result<(), String>;
    /// How many tokens one input may have: where the tokenizer truncates.
    fn max_tokens(&self) -> usize;
    /// Whether the family's transformers tokenizer feeds `token_type_ids` to the model.
    fn reads_segments(&self) -> bool {
        false
    }
    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>>;
}

/// Load the model and tokenizer that `files` point to, with default options.
pub fn load(files: &ModelFiles) -> Result<Loaded> {
    load_with(files, &LoadOptions::default())
}

/// Load the model and tokenizer that `files` point to.
pub fn load_with(files: &ModelFiles, options: &LoadOptions) -> Result<Loaded> {
    let (mut loaded, weight_layers) = match &files.weights {
        Weights::Gguf(path) => gguf::load(path, options)?,
        _ => load_transformers(files, options)?,
    };
    let info = loaded.model.info().clone();
    if info.causal {
        loaded.tokenizer = loaded.tokenizer.single_text(&loaded.model_type);
    }
    let config = files.config.display();
    if weight_layers > info.layers {
        loaded.warnings.push(format!(
            "the weights hold {weight_layers} layers but {config} describes {}; only the first {} are run (is the config from another model?)",
            info.layers, info.layers
        ));
    }
    let vocab = loaded.tokenizer.vocab_size();
    // Embedding tables are often padded past the tokenizer (to a multiple of 64 or 128), so
    // only a gap wider than padding explains is worth a word; a larger tokenizer always is.
    let padding = (info.vocab_size / 50).max(128);
    if vocab > info.vocab_size || vocab + padding < info.vocab_size {
        loaded.warnings.push(format!(
            "the tokenizer has {vocab} tokens but the model's vocabulary has {} (in {config}); are they from the same model?",
            info.vocab_size
        ));
    }
    Ok(loaded)
}

/// A Hugging Face folder: config.json, tokenizer.json and weights; also returns how many
/// layers the weight names hold.
fn load_transformers(files: &ModelFiles, options: &LoadOptions) -> Result<(Loaded, usize)> {
    refuse_quantized(files, options)?;
    let (model_type, arch) = architecture(files)?;
    let mut tokenizer = TextTokenizer::from_file(&files.tokenizer, arch.max_tokens())?;
    if !arch.reads_segments() {
        tokenizer = tokenizer.without_segments();
    }
    let (vb, names) = weights::var_builder(&files.weights)?;
    let weight_layers = weights::layers_in(names.iter().map(String::as_str));
    let model = arch.build(vb).map_err(|e| match e {
        // A tensor that is missing or mis-shaped means these weights are not this architecture.
        Error::Compute(inner) => Error::model_file(
            files.weights.files()[0],
            format!("does not hold {model_type} weights as config.json describes ({})", crate::error::first_line(&inner)),
        ),
        other => other,
    })?;
    Ok((Loaded { model, tokenizer, model_type, precision: "f32".into(), warnings: Vec::new() }, weight_layers))
}


/// What `info` shows about a model, read from its config.json or GGUF header only.
#[derive(Debug, Clone)]
pub struct Description {
    pub info: ArchInfo,
    /// config.json's `model_type`, or a GGUF file's `general.architecture`.
    pub model_type: String,
    /// How `show` and `dump` would compute with the weights (as [`Loaded::precision`]).
    pub precision: String,
}

/// Describe the model `files` point to without reading its weights or tokenizer:
/// a config.json, or a GGUF file's header, is all that is opened.
pub fn describe(files: &ModelFiles, options: &LoadOptions) -> Result<Description> {
    if let Weights::Gguf(path) = &files.weights {
        return gguf::describe(path, options);
    }
    refuse_quantized(files, options)?;
    let (model_type, arch) = architecture(files)?;
    Ok(Description { info: arch.info(), model_type, precision: "f32".into() })
}

fn refuse_quantized(files: &ModelFiles, options: &LoadOptions) -> Result<()> {
    if options.quantized {
        return Err(Error::Usage(format!(
            "--quantized needs a .gguf model; {} holds {} weights, which are always computed in f32",
            files.id,
            files.weights.format()
        )));
    }
    Ok(())
}

/// Read config.json: its `model_type` and the architecture it describes, checked.
fn architecture(files: &ModelFiles) -> Result<(String, Box<dyn Architecture>)> {
    let text = std::fs::read_to_string(&files.config)
        .map_err(|e| Error::model_file(&files.config, format!("cannot be read: {e}")))?;
    let model_type = parse_config::<ModelType>(&text, files)?
        .model_type
        .ok_or_else(|| Error::model_file(&files.config, "has no model_type; it must be a transformers config.json"))?;
    let arch: Box<dyn Architecture> = match model_type.as_str() {
        "bert" => Box::new(parse_config::<bert::Config>(&text, files)?),
        // The RoBERTa line runs BERT's code; transformers' CamembertModel is RobertaModel renamed.
        "roberta" | "xlm-roberta" | "camembert" => Box::new(parse_config::<bert::Config>(&text, files)?.roberta()),
        "distilbert" => Box::new(parse_config::<distilbert::Config>(&text, files)?),
        "gpt2" => Box::new(parse_config::<gpt2::Config>(&text, files)?),
        "gpt_neox" => Box::new(parse_config::<gpt_neox::Config>(&text, files)?),
        other => match llama::Family::from_model_type(other) {
            Some(family) => Box::new(LlamaArch(
                llama::Config::from_json(&text, family).map_err(|message| Error::model_file(&files.config, message))?,
            )),
            None => {
                return Err(Error::UnsupportedArchitecture {
                    found: other.to_string(),
                    path: files.config.clone(),
                    supported: SUPPORTED.join(", "),
                })
            }
        },
    };
    arch.check().map_err(|message| Error::model_file(&files.config, message))?;
    if arch.max_tokens() == 0 {
        return Err(Error::model_file(&files.config, "leaves room for no tokens (its maximum number of positions is 0)"));
    }
    Ok((model_type, arch))
}

/// The llama family from a config.json; GGUF files come through [`gguf::load`].
struct LlamaArch(llama::Config);

impl Architecture for LlamaArch {
    fn info(&self) -> ArchInfo {
        self.0.arch_info()
    }

    fn check(&self) -> std::result::Result<(), String> {
        // llama::Config::from_json already refused what it cannot follow.
        Ok(())
    }

    fn max_tokens(&self) -> usize {
        self.0.max_positions
    }

    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>> {
        let tensors = llama::Tensors { dense: vb, quantized: Default::default(), blocks: Default::default() };
        Ok(Box::new(llama::Llama::load(&self.0, tensors)?))
    }
}

fn parse_config<T: DeserializeOwned>(text: &str, files: &ModelFiles) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::model_file(&files.config, format!("is not a valid config: {e}")))
}

/// Counts read from a config (or GGUF metadata) that size loops and tables before any
/// weight is compared with them: far beyond any real model (the largest have ~130 layers,
/// 128 heads, hidden 16384), so a crafted file is refused instead of allocating what it claims.
pub(crate) fn check_counts(counts: &[(&str, usize)]) -> std::result::Result<(), String> {
    for &(name, value) in counts {
        let limit: usize = if name.contains("hidden") || name.contains("embedding_length") { 1 << 24 } else { 1 << 16 };
        if value > limit {
            return Err(format!("has {name} {value}, which no real model has (attnmap reads at most {limit}); check the file"));
        }
    }
    Ok(())
}

/// Heads must split the hidden size evenly, and there must be something to look at.
fn check_geometry(hidden: usize, heads: usize, layers: usize) -> std::result::Result<(), String> {
    // Also keeps the width arithmetic (3 * hidden, 4 * hidden) from overflowing.
    check_counts(&[("hidden_size", hidden), ("attention heads", heads), ("layers", layers)])?;
    if heads == 0 || layers == 0 || !hidden.is_multiple_of(heads) {
        return Err(format!(
            "has an impossible shape: hidden_size {hidden}, {heads} heads, {layers} layers (hidden_size must be a positive multiple of the head count)"
        ));
    }
    Ok(())
}

/// transformers' scaling `head_dim ** -0.5`, computed as Python does before PyTorch rounds it to f32.
fn inverse_sqrt(head_dim: usize) -> f64 {
    (head_dim as f64).powf(-0.5)
}

/// A linear layer with bias, shapes checked against the file.
pub(crate) fn linear(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(candle_nn::linear(input, output, vb)?)
}

/// A linear layer whose bias the config may switch off (e.g. GPT-NeoX's `attention_bias`).
pub(crate) fn linear_with_bias(input: usize, output: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    Ok(candle_nn::linear_b(input, output, bias, vb)?)
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
