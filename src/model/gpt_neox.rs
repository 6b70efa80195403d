//! GPT-NeoX (`model_type` gpt_neox: Pythia, GPT-NeoX-20B, …) with attention hooks.
//!
//! Follows transformers 5.24 `models/gpt_neox/modeling_gpt_neox.py` (GPTNeoXModel,
//! eager attention) and candle-transformers 0.11 `models/stable_lm.rs` (its
//! partial-rotary, LayerNorm-with-bias relative). What it changes from
//! stable_lm.rs: q, k and v come from one fused `query_key_value` whose output is
//! laid out per head, `[heads, 3, head_dim]` (not `[3, heads, head_dim]`); the
//! residual can be parallel (`x + attn(ln1(x)) + mlp(ln2(x))`, Pythia) or
//! sequential; the rotary frequencies are f32 as in transformers
//! ([`super::rotary`]); attention goes through [`super::attention::attend`],
//! which reports every hook point.
//!
//! Rotary settings are read as transformers 5.24's GPTNeoXConfig reads them:
//! `rope_scaling` or `rope_parameters` first, then Pythia's `rotary_emb_base` and
//! `rotary_pct`, then 10000 and 0.25.

use candle_core::{Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::attention::{attend, merge_heads, record_result, record_value_norm, Mask};
use super::rotary::Rotary;
use super::{check_geometry, inverse_sqrt, layer_norm, linear, linear_with_bias, ArchInfo, Architecture, AttentionModel};
use crate::error::Result;
use crate::hooks::HookSink;
use crate::tokenize::Encoded;

/// The fields of a GPT-NeoX config.json the forward pass needs, with GPTNeoXConfig's defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: Activation,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "yes")]
    pub use_parallel_residual: bool,
    #[serde(default = "yes")]
    pub attention_bias: bool,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Pythia's name for partial_rotary_factor.
    #[serde(default)]
    pub rotary_pct: Option<f64>,
    /// Pythia's name for rope_theta.
    #[serde(default)]
    pub rotary_emb_base: Option<f64>,
}

/// transformers 5's `rope_parameters` (4.x's `rope_scaling`).
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
}

fn default_positions() -> usize {
    2048
}

fn default_eps() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

impl Config {
    fn rope(&self) -> Option<&RopeParameters> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    fn rope_theta(&self) -> f64 {
        self.rope().and_then(|r| r.rope_theta).or(self.rotary_emb_base).unwrap_or(10000.0)
    }

    fn partial_rotary_factor(&self) -> f64 {
        self.rope().and_then(|r| r.partial_rotary_factor).or(self.rotary_pct).unwrap_or(0.25)
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// `int(head_dim * partial_rotary_factor)`, as transformers rounds it.
    fn rotary_dims(&self) -> usize {
        (self.head_dim() as f64 * self.partial_rotary_factor()) as usize
    }
}

impl Architecture for Config {
    fn info(&self) -> ArchInfo {
        let (hidden, heads) = (self.hidden_size, self.num_attention_heads);
        ArchInfo {
            family: "gpt_neox",
            layers: self.num_hidden_layers,
            heads,
            kv_heads: heads,
            head_dim: self.head_dim(),
            hidden,
            max_positions: self.max_position_embeddings,
            vocab_size: self.vocab_size,
            causal: true,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_geometry(self.hidden_size, self.num_attention_heads, self.num_hidden_layers)?;
        if let Some(kind) = self.rope().and_then(|r| r.rope_type.as_deref()).filter(|k| *k != "default") {
            return Err(format!("has rope_type {kind:?}, which attnmap does not support (only \"default\" RoPE)"));
        }
        let factor = self.partial_rotary_factor();
        if !(0.0..=1.0).contains(&factor) {
            return Err(format!("has a rotary fraction (rotary_pct / partial_rotary_factor) of {factor}; it must be between 0 and 1"));
        }
        if !self.rotary_dims().is_multiple_of(2) {
            return Err(format!(
                "rotates {} of each head's {} dimensions (rotary_pct / partial_rotary_factor {factor}); RoPE needs an even number",
                self.rotary_dims(),
                self.head_dim()
            ));
        }
        if self.rope_theta().is_nan() || self.rope_theta() <= 0.0 {
            return Err(format!("has a rotary base (rotary_emb_base / rope_theta) of {}; it must be positive", self.rope_theta()));
        }
        Ok(())
    }

    fn max_tokens(&self) -> usize {
        self.max_position_embeddings
    }

    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>> {
        Ok(Box::new(GptNeox::load(self, vb)?))
    }
}

struct Layer {
    input_layernorm: LayerNorm,
    post_attention_layernorm: LayerNorm,
    query_key_value: Linear,
    dense: Linear,
    dense_h_to_4h: Linear,
    dense_4h_to_h: Linear,
}

pub struct GptNeox {
    info: ArchInfo,
    act: Activation,
    parallel_residual: bool,
    rotary_dims: usize,
    rope_theta: f64,
    embed_in: Embedding,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
}

impl GptNeox {
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        // GPTNeoXForCausalLM and the other task models keep the body under `gpt_neox.`.
        let vb = if vb.contains_tensor("embed_in.weight") { vb } else { vb.pp("gpt_neox") };
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let bias = config.attention_bias;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                let vb = vb.pp(format!("layers.{index}"));
                Ok(Layer {
                    input_layernorm: layer_norm(hidden, eps, vb.pp("input_layernorm"))?,
                    post_attention_layernorm: layer_norm(hidden, eps, vb.pp("post_attention_layernorm"))?,
                    query_key_value: linear_with_bias(hidden, 3 * hidden, bias, vb.pp("attention.query_key_value"))?,
                    dense: linear_with_bias(hidden, hidden, bias, vb.pp("attention.dense"))?,
                    dense_h_to_4h: linear(hidden, config.intermediate_size, vb.pp("mlp.dense_h_to_4h"))?,
                    dense_4h_to_h: linear(config.intermediate_size, hidden, vb.pp("mlp.dense_4h_to_h"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: Architecture::info(config),
            act: config.hidden_act,
            parallel_residual: config.use_parallel_residual,
            rotary_dims: config.rotary_dims(),
            rope_theta: config.rope_theta(),
            embed_in: candle_nn::embedding(config.vocab_size, hidden, vb.pp("embed_in"))?,
            layers,
            final_layer_norm: layer_norm(hidden, eps, vb.pp("final_layer_norm"))?,
        })
    }

    fn mlp(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let inner = super::bert::activate(self.act, &layer.dense_h_to_4h.forward(&layer.post_attention_layernorm.forward(x)?)?)?;
        Ok(layer.dense_4h_to_h.forward(&inner)?)
    }
}

impl AttentionModel for GptNeox {
    fn info(&self) -> &ArchInfo {
        &self.info
    }

    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor> {
        let device = Device::Cpu;
        let seq = input.len();
        let ids = Tensor::new(input.ids.as_slice(), &device)?;
        let mut hidden = self.embed_in.forward(&ids)?;
        let rotary = Rotary::new(self.rotary_dims, self.rope_theta, seq)?;
        let (heads, head_dim) = (self.info.heads, self.info.head_dim);
        let scale = inverse_sqrt(head_dim);
        let last = sink.last_layer().unwrap_or(usize::MAX);
        for (index, layer) in self.layers.iter().enumerate() {
            let qkv = layer.query_key_value.forward(&layer.input_layernorm.forward(&hidden)?)?;
            // Per head: [q | k | v], each head_dim wide.
            let qkv = qkv.reshape((seq, heads, 3 * head_dim))?.transpose(0, 1)?;
            let q = rotary.apply(&qkv.narrow(2, 0, head_dim)?)?;
            let k = rotary.apply(&qkv.narrow(2, head_dim, head_dim)?)?;
            let v = qkv.narrow(2, 2 * head_dim, head_dim)?.contiguous()?;
            let z = attend(index, &q, &k, &v, Mask::Causal { window: None }, scale, sink)?;
            record_result(index, &z, layer.dense.weight(), sink)?;
            record_value_norm(index, &v, layer.dense.weight(), sink)?;
            let attn_out = layer.dense.forward(&merge_heads(&z)?)?;
            hidden = if self.parallel_residual {
                ((self.mlp(layer, &hidden)? + attn_out)? + hidden)?
            } else {
                let attended = (attn_out + hidden)?;
                (self.mlp(layer, &attended)? + attended)?
            };
            if index >= last && index + 1 < self.layers.len() {
                return Ok(hidden);
            }
        }
        Ok(self.final_layer_norm.forward(&hidden)?)
    }
}
