//! The BERT family (`model_type` bert: BERT, MiniLM, …) with attention hooks,
//! and the RoBERTa line that runs the same code (roberta, xlm-roberta, camembert).
//!
//! Follows candle-transformers 0.11 `models/bert.rs` and `models/xlm_roberta.rs`
//! for weight names and transformers 5.24 `models/bert/modeling_bert.py` and
//! `models/roberta/modeling_roberta.py` (eager attention) for the arithmetic;
//! what it changes is that attention goes through [`super::attention::attend`],
//! which reports every hook point. What RoBERTa changes is in [`Variant`].

use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::attention::{attend, merge_heads, record_result, record_value_norm, Mask};
use super::dense::Dense;
use super::{check_geometry, inverse_sqrt, layer_norm, linear, ArchInfo, Architecture, AttentionModel};
use crate::error::{Error, Result};
use crate::hooks::{HookKind, HookPoint, HookSink};
use crate::tokenize::Encoded;

/// The fields of a BERT config.json that the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// RoBERTa numbers positions from pad_token_id + 1 (BERT ignores it); RobertaConfig defaults it to 1.
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<u32>,
    #[serde(skip)]
    pub variant: Variant,
}

/// BERT proper, or the RoBERTa line. transformers' RobertaEmbeddings is BERT's
/// plus `create_position_ids_from_input_ids`: positions count the non-padding
/// tokens from `pad_token_id + 1`, so a model with 514 position embeddings
/// reads at most 512 tokens. Its tokenizers feed no token_type_ids, the encoder
/// sits under `roberta.` in task checkpoints, and it is otherwise BERT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Bert,
    Roberta,
}

impl Config {
    /// The same config read as RoBERTa / XLM-RoBERTa / CamemBERT.
    pub fn roberta(self) -> Self {
        Self { variant: Variant::Roberta, ..self }
    }
}

impl Architecture for Config {
    fn info(&self) -> ArchInfo {
        let (hidden, heads) = (self.hidden_size, self.num_attention_heads);
        let prefix = match self.variant {
            Variant::Bert => "bert",
            Variant::Roberta => "roberta",
        };
        ArchInfo {
            family: prefix,
            layers: self.num_hidden_layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            hidden,
            max_positions: self.max_tokens(),
            vocab_size: self.vocab_size,
            causal: false,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_geometry(self.hidden_size, self.num_attention_heads, self.num_hidden_layers)?;
        if let Some(kind) = self.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
            return Err(format!("position_embedding_type {kind:?} is not supported (only \"absolute\")"));
        }
        if self.variant == Variant::Roberta {
            let Some(pad) = self.pad_token_id else {
                return Err("has pad_token_id null, but RoBERTa's positions are counted from pad_token_id + 1".into());
            };
            if self.max_position_embeddings <= pad as usize + 1 {
                return Err(format!(
                    "has max_position_embeddings {} but RoBERTa's positions start at pad_token_id + 1 = {}, which leaves no room for tokens",
                    self.max_position_embeddings,
                    pad as usize + 1
                ));
            }
        }
        Ok(())
    }

    fn max_tokens(&self) -> usize {
        match (self.variant, self.pad_token_id) {
            (Variant::Roberta, Some(pad)) => self.max_position_embeddings.saturating_sub(pad as usize + 1),
            _ => self.max_position_embeddings,
        }
    }

    fn reads_segments(&self) -> bool {
        self.variant == Variant::Bert
    }

    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>> {
        Ok(Box::new(Bert::load(self, vb)?))
    }
}

fn default_type_vocab() -> usize {
    2
}

/// BertConfig's and RobertaConfig's pad_token_id defaults are 0 and 1; only RoBERTa reads it.
fn default_pad() -> Option<u32> {
    Some(1)
}

fn default_eps() -> f64 {
    1e-12
}

/// A LayerNorm's weight, bias and eps, applied by [`super::kernels::layer_norm`].
pub(super) struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn new(norm: &LayerNorm) -> Result<Self> {
        let width = norm.weight().elem_count();
        let bias = match norm.bias() {
            Some(bias) => bias.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
            None => vec![0f32; width],
        };
        Ok(Self { weight: norm.weight().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?, bias, eps: norm.eps() as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// One post-LayerNorm encoder layer: self-attention, add & norm, MLP, add & norm.
/// DistilBERT's TransformerBlock is the same arithmetic under other weight names.
pub(super) struct Layer {
    /// Query, key and value side by side: one product over the layer's input.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    intermediate: Dense,
    output: Dense,
    out_norm: Norm,
}

impl Layer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(query: Linear, key: Linear, value: Linear, attn_out: Linear, attn_norm: LayerNorm, intermediate: Linear, output: Linear, out_norm: LayerNorm) -> Result<Self> {
        Ok(Self {
            qkv: Dense::concat(&[&query, &key, &value])?,
            attn_out: Dense::new(&attn_out)?,
            attn_norm: Norm::new(&attn_norm)?,
            intermediate: Dense::new(&intermediate)?,
            output: Dense::new(&output)?,
            out_norm: Norm::new(&out_norm)?,
        })
    }
}

/// Run `layers` over one unpadded sequence's embeddings, stopping after the last layer the
/// sink wants. No mask is added: transformers' bidirectional mask is all zeros without padding.
pub(super) fn encode(layers: &[Layer], embedded: Tensor, info: &ArchInfo, act: Activation, sink: &mut dyn HookSink) -> Result<Tensor> {
    let mut hidden = embedded;
    let scale = inverse_sqrt(info.head_dim);
    let last = sink.last_layer().unwrap_or(usize::MAX);
    let (heads, head_dim) = (info.heads, info.head_dim);
    for (index, layer) in layers.iter().enumerate() {
        // [seq, 3, heads, d]: q, k and v are strided views of the one product, read in place.
        let qkv = layer.qkv.forward(&hidden, None)?;
        let qkv = qkv.reshape((qkv.dim(0)?, 3, heads, head_dim))?;
        let part = |i: usize| qkv.narrow(1, i, 1)?.squeeze(1)?.transpose(0, 1);
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let z = attend(index, &q, &k, &v, Mask::None, scale, sink)?;
        // The packed weight is unpacked (a copy) only for a sink that reads it.
        if [HookKind::Result, HookKind::ValueNorm].into_iter().any(|kind| sink.wants(HookPoint::new(index, kind))) {
            let w_o = layer.attn_out.weight()?;
            record_result(index, &z, &w_o, sink)?;
            record_value_norm(index, &v, &w_o, sink)?;
        }
        let attended = layer.attn_norm.forward(&layer.attn_out.forward(&merge_heads(&z)?, Some(&hidden))?)?;
        let inner = match act {
            Activation::Gelu => layer.intermediate.forward_then(&attended, None, super::kernels::gelu_erf_in_place)?,
            other => other.forward(&layer.intermediate.forward(&attended, None)?)?,
        };
        hidden = layer.out_norm.forward(&layer.output.forward(&inner, Some(&attended))?)?;
        if index >= last {
            break;
        }
    }
    Ok(hidden)
}

/// `act` applied to `x`; exact GELU (BERT's "gelu") through the vectorised kernel.
pub(super) fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Gelu => super::kernels::gelu_erf(x),
        other => Ok(other.forward(x)?),
    }
}

pub struct Bert {
    info: ArchInfo,
    variant: Variant,
    pad_token_id: u32,
    act: Activation,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        // Task heads (BertForMaskedLM, RobertaForMaskedLM, …) keep the encoder under `bert.` / `roberta.`.
        let prefix = match config.variant {
            Variant::Bert => "bert",
            Variant::Roberta => "roberta",
        };
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp(prefix) };
        let hidden = config.hidden_size;
        let emb = vb.pp("embeddings");
        let word = candle_nn::embedding(config.vocab_size, hidden, emb.pp("word_embeddings"))?;
        let position = candle_nn::embedding(config.max_position_embeddings, hidden, emb.pp("position_embeddings"))?;
        let token_type = candle_nn::embedding(config.type_vocab_size, hidden, emb.pp("token_type_embeddings"))?;
        let embed_norm = layer_norm(hidden, config.layer_norm_eps, emb.pp("LayerNorm"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let vb = vb.pp(format!("encoder.layer.{index}"));
                let attn = vb.pp("attention");
                Layer::new(
                    linear(hidden, hidden, attn.pp("self.query"))?,
                    linear(hidden, hidden, attn.pp("self.key"))?,
                    linear(hidden, hidden, attn.pp("self.value"))?,
                    linear(hidden, hidden, attn.pp("output.dense"))?,
                    layer_norm(hidden, config.layer_norm_eps, attn.pp("output.LayerNorm"))?,
                    linear(hidden, config.intermediate_size, vb.pp("intermediate.dense"))?,
                    linear(config.intermediate_size, hidden, vb.pp("output.dense"))?,
                    layer_norm(hidden, config.layer_norm_eps, vb.pp("output.LayerNorm"))?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: Architecture::info(config),
            variant: config.variant,
            pad_token_id: config.pad_token_id.unwrap_or_default(),
            act: config.hidden_act,
            word,
            position,
            token_type,
            embed_norm,
            layers,
        })
    }
}

impl AttentionModel for Bert {
    fn info(&self) -> &ArchInfo {
        &self.info
    }

    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor> {
        let device = Device::Cpu;
        let seq = input.len();
        let ids = Tensor::new(input.ids.as_slice(), &device)?;
        let segments = self.token_type.embeddings().dim(0)?;
        if self.variant == Variant::Bert && input.type_ids.iter().any(|&t| t as usize >= segments) {
            return Err(Error::Input(format!(
                "this model has {segments} segment type{} (type_vocab_size) but the input uses segment {}; leave out --pair for this model",
                if segments == 1 { "" } else { "s" },
                input.type_ids.iter().max().copied().unwrap_or_default()
            )));
        }
        let (type_ids, positions) = match self.variant {
            Variant::Bert => (Tensor::new(input.type_ids.as_slice(), &device)?, Tensor::arange(0u32, seq as u32, &device)?),
            Variant::Roberta => (Tensor::zeros(seq, DType::U32, &device)?, Tensor::new(roberta_positions(&input.ids, self.pad_token_id), &device)?),
        };
        let embedded = ((self.word.forward(&ids)? + self.token_type.forward(&type_ids)?)? + self.position.forward(&positions)?)?;
        encode(&self.layers, self.embed_norm.forward(&embedded)?, &self.info, self.act, sink)
    }
}

/// transformers' `create_position_ids_from_input_ids`: non-padding tokens are numbered from
/// `pad + 1` on, padding tokens (a literal `<pad>` in the text) sit at `pad` and are not counted.
fn roberta_positions(ids: &[u32], pad: u32) -> Vec<u32> {
    let mut seen = 0;
    ids.iter()
        .map(|&id| {
            if id == pad {
                pad
            } else {
                seen += 1;
                pad + seen
            }
        })
        .collect()
}
