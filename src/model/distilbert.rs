//! DistilBERT (`model_type` distilbert) with attention hooks.
//!
//! Follows transformers 5.24 `models/distilbert/modeling_distilbert.py` (eager
//! attention) for the arithmetic and candle-transformers 0.11
//! `models/distilbert.rs` for the weight names: word and position embeddings
//! (no token types) and a LayerNorm, then post-LayerNorm blocks
//! `transformer.layer.{i}` (`attention.{q,k,v,out}_lin`, `sa_layer_norm`,
//! `ffn.lin1`, `ffn.lin2`, `output_layer_norm`). What it changes: the blocks run
//! as BERT's ([`super::bert::encode`]), whose attention goes through
//! [`super::attention::attend`], which reports every hook point, and the scaling
//! is applied to QK^T as transformers 5.x does. candle's file and
//! transformers 4.x divide q by sqrt(head_dim) before the matmul instead, which
//! rounds differently (in the last bits of f32).
//!
//! `sinusoidal_pos_embds` needs nothing here: transformers writes the sinusoids
//! into `position_embeddings.weight`, which is what the checkpoint stores. Every
//! LayerNorm uses eps 1e-12, fixed in transformers' code rather than the config.

use candle_core::{Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Module, VarBuilder};
use serde::Deserialize;

use super::bert::{encode, Layer};
use super::{check_geometry, layer_norm, linear, ArchInfo, Architecture, AttentionModel};
use crate::error::Result;
use crate::hooks::HookSink;
use crate::tokenize::Encoded;

/// transformers hard-codes this eps for all of DistilBERT's LayerNorms.
const LAYER_NORM_EPS: f64 = 1e-12;

/// The fields of a DistilBERT config.json the forward pass needs, with DistilBertConfig's defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    #[serde(default = "default_dim")]
    pub dim: usize,
    #[serde(default = "default_layers")]
    pub n_layers: usize,
    #[serde(default = "default_heads")]
    pub n_heads: usize,
    #[serde(default = "default_hidden_dim")]
    pub hidden_dim: usize,
    #[serde(default)]
    pub activation: Activation,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
}

fn default_vocab() -> usize {
    30522
}

fn default_dim() -> usize {
    768
}

fn default_layers() -> usize {
    6
}

fn default_heads() -> usize {
    12
}

fn default_hidden_dim() -> usize {
    4 * 768
}

fn default_positions() -> usize {
    512
}

impl Architecture for Config {
    fn info(&self) -> ArchInfo {
        let (hidden, heads) = (self.dim, self.n_heads);
        ArchInfo {
            family: "distilbert",
            layers: self.n_layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            hidden,
            max_positions: self.max_position_embeddings,
            vocab_size: self.vocab_size,
            causal: false,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_geometry(self.dim, self.n_heads, self.n_layers)
    }

    fn max_tokens(&self) -> usize {
        self.max_position_embeddings
    }

    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>> {
        Ok(Box::new(DistilBert::load(self, vb)?))
    }
}

pub struct DistilBert {
    info: ArchInfo,
    act: Activation,
    word: Embedding,
    position: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl DistilBert {
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        // Task models (DistilBertForMaskedLM, …) keep the encoder under `distilbert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("distilbert") };
        let hidden = config.dim;
        let emb = vb.pp("embeddings");
        let layers = (0..config.n_layers)
            .map(|index| {
                let vb = vb.pp(format!("transformer.layer.{index}"));
                let attn = vb.pp("attention");
                Layer::new(
                    linear(hidden, hidden, attn.pp("q_lin"))?,
                    linear(hidden, hidden, attn.pp("k_lin"))?,
                    linear(hidden, hidden, attn.pp("v_lin"))?,
                    linear(hidden, hidden, attn.pp("out_lin"))?,
                    layer_norm(hidden, LAYER_NORM_EPS, vb.pp("sa_layer_norm"))?,
                    linear(hidden, config.hidden_dim, vb.pp("ffn.lin1"))?,
                    linear(config.hidden_dim, hidden, vb.pp("ffn.lin2"))?,
                    layer_norm(hidden, LAYER_NORM_EPS, vb.pp("output_layer_norm"))?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: Architecture::info(config),
            act: config.activation,
            word: candle_nn::embedding(config.vocab_size, hidden, emb.pp("word_embeddings"))?,
            position: candle_nn::embedding(config.max_position_embeddings, hidden, emb.pp("position_embeddings"))?,
            embed_norm: layer_norm(hidden, LAYER_NORM_EPS, emb.pp("LayerNorm"))?,
            layers,
        })
    }
}

impl AttentionModel for DistilBert {
    fn info(&self) -> &ArchInfo {
        &self.info
    }

    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor> {
        let device = Device::Cpu;
        let seq = input.len();
        let ids = Tensor::new(input.ids.as_slice(), &device)?;
        let positions = Tensor::arange(0u32, seq as u32, &device)?;
        let embedded = (self.word.forward(&ids)? + self.position.forward(&positions)?)?;
        encode(&self.layers, self.embed_norm.forward(&embedded)?, &self.info, self.act, sink)
    }
}
