//! The BERT family (`model_type` bert: BERT, MiniLM, …) with attention hooks.
//!
//! Follows candle-transformers 0.11 `models/bert.rs` for weight names and
//! transformers' `models/bert/modeling_bert.py` (eager attention) for the
//! arithmetic; what it changes is that attention goes through
//! [`super::attention::attend`], which reports every hook point.

use candle_core::{Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::attention::{attend, merge_heads, record_result, split_heads};
use super::{layer_norm, linear, ArchInfo, AttentionModel};
use crate::error::Result;
use crate::hooks::HookSink;
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
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

pub struct Bert {
    info: ArchInfo,
    act: Activation,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        // Task heads (BertForMaskedLM, …) keep the encoder under `bert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
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
                Ok(Layer {
                    query: linear(hidden, hidden, attn.pp("self.query"))?,
                    key: linear(hidden, hidden, attn.pp("self.key"))?,
                    value: linear(hidden, hidden, attn.pp("self.value"))?,
                    attn_out: linear(hidden, hidden, attn.pp("output.dense"))?,
                    attn_norm: layer_norm(hidden, config.layer_norm_eps, attn.pp("output.LayerNorm"))?,
                    intermediate: linear(hidden, config.intermediate_size, vb.pp("intermediate.dense"))?,
                    output: linear(config.intermediate_size, hidden, vb.pp("output.dense"))?,
                    out_norm: layer_norm(hidden, config.layer_norm_eps, vb.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let heads = config.num_attention_heads;
        Ok(Self {
            info: ArchInfo {
                family: "bert",
                layers: config.num_hidden_layers,
                heads,
                kv_heads: heads,
                head_dim: hidden / heads,
                hidden,
                max_positions: config.max_position_embeddings,
                vocab_size: config.vocab_size,
                causal: false,
            },
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
        let type_ids = Tensor::new(input.type_ids.as_slice(), &device)?;
        let positions = Tensor::arange(0u32, seq as u32, &device)?;
        let embedded = ((self.word.forward(&ids)? + self.token_type.forward(&type_ids)?)? + self.position.forward(&positions)?)?;
        let mut hidden = self.embed_norm.forward(&embedded)?;
        let heads = self.info.heads;
        let scale = 1.0 / (self.info.head_dim as f64).sqrt();
        let last = sink.last_layer().unwrap_or(usize::MAX);
        for (index, layer) in self.layers.iter().enumerate() {
            let q = split_heads(&layer.query.forward(&hidden)?, heads)?;
            let k = split_heads(&layer.key.forward(&hidden)?, heads)?;
            let v = split_heads(&layer.value.forward(&hidden)?, heads)?;
            // One unpadded sequence: BERT's attention mask is all zeros, so none is added.
            let z = attend(index, &q, &k, &v, None, scale, sink)?;
            record_result(index, &z, layer.attn_out.weight(), sink)?;
            let attended = layer.attn_norm.forward(&(layer.attn_out.forward(&merge_heads(&z)?)? + &hidden)?)?;
            let inner = self.act.forward(&layer.intermediate.forward(&attended)?)?;
            hidden = layer.out_norm.forward(&(layer.output.forward(&inner)? + &attended)?)?;
            if index >= last {
                break;
            }
        }
        Ok(hidden)
    }
}
