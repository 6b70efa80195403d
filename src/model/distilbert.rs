//! DistilBERT (`model_type` distilbert) with attention hooks.
//!
//! Follows transformers 5.24 `models/distilbert/modeling_distilbert.py` (eager
//! attention) for the arithmetic and candle-transformers 0.11
//! `models/distilbert.rs` for the weight names: word and position embeddings
//! (no token types) and a LayerNorm, then post-LayerNorm blocks
//! `transformer.layer.{i}` (`attention.{q,k,v,out}_lin`, `sa_layer_norm`,
//! `ffn.lin1`, `ffn.lin2`, `output_layer_norm`). What it changes: attention goes
//! through [`super::attention::attend`], which reports every hook point, and
//! the scaling is applied to QK^T as transformers 5.x does. candle's file and
//! transformers 4.x divide q by sqrt(head_dim) before the matmul instead, which
//! rounds differently (in the last bits of f32).
//!
//! `sinusoidal_pos_embds` needs nothing here: transformers writes the sinusoids
//! into `position_embeddings.weight`, which is what the checkpoint stores. Every
//! LayerNorm uses eps 1e-12, fixed in transformers' code rather than the config.

use candle_core::{Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::attention::{attend, merge_heads, record_result, split_heads};
use super::{check_geometry, inverse_sqrt, layer_norm, linear, ArchInfo, Architecture, AttentionModel};
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

struct Layer {
    q_lin: Linear,
    k_lin: Linear,
    v_lin: Linear,
    out_lin: Linear,
    sa_layer_norm: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    output_layer_norm: LayerNorm,
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
                Ok(Layer {
                    q_lin: linear(hidden, hidden, attn.pp("q_lin"))?,
                    k_lin: linear(hidden, hidden, attn.pp("k_lin"))?,
                    v_lin: linear(hidden, hidden, attn.pp("v_lin"))?,
                    out_lin: linear(hidden, hidden, attn.pp("out_lin"))?,
                    sa_layer_norm: layer_norm(hidden, LAYER_NORM_EPS, vb.pp("sa_layer_norm"))?,
                    lin1: linear(hidden, config.hidden_dim, vb.pp("ffn.lin1"))?,
                    lin2: linear(config.hidden_dim, hidden, vb.pp("ffn.lin2"))?,
                    output_layer_norm: layer_norm(hidden, LAYER_NORM_EPS, vb.pp("output_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let heads = config.n_heads;
        Ok(Self {
            info: ArchInfo {
                family: "distilbert",
                layers: config.n_layers,
                heads,
                kv_heads: heads,
                head_dim: hidden / heads,
                hidden,
                max_positions: config.max_position_embeddings,
                vocab_size: config.vocab_size,
                causal: false,
            },
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
        let mut hidden = self.embed_norm.forward(&(self.word.forward(&ids)? + self.position.forward(&positions)?)?)?;
        let heads = self.info.heads;
        let scale = inverse_sqrt(self.info.head_dim);
        let last = sink.last_layer().unwrap_or(usize::MAX);
        for (index, layer) in self.layers.iter().enumerate() {
            let q = split_heads(&layer.q_lin.forward(&hidden)?, heads)?;
            let k = split_heads(&layer.k_lin.forward(&hidden)?, heads)?;
            let v = split_heads(&layer.v_lin.forward(&hidden)?, heads)?;
            // One unpadded sequence: no mask.
            let z = attend(index, &q, &k, &v, None, scale, sink)?;
            record_result(index, &z, layer.out_lin.weight(), sink)?;
            let attended = layer.sa_layer_norm.forward(&(layer.out_lin.forward(&merge_heads(&z)?)? + &hidden)?)?;
            let inner = self.act.forward(&layer.lin1.forward(&attended)?)?;
            hidden = layer.output_layer_norm.forward(&(layer.lin2.forward(&inner)? + &attended)?)?;
            if index >= last {
                break;
            }
        }
        Ok(hidden)
    }
}
