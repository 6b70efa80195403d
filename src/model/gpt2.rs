//! GPT-2 (`model_type` gpt2) with attention hooks.
//!
//! Follows transformers 5.24 `models/gpt2/modeling_gpt2.py` (GPT2Model, eager
//! attention) for the arithmetic and candle-transformers 0.11 `models/bigcode.rs`
//! (its GPT-2 descendant) for the layout: learned positions `wpe`, pre-LayerNorm
//! blocks `h.{i}` (`ln_1`, fused `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc`,
//! `mlp.c_proj`) and a final `ln_f`. What it changes from bigcode.rs: weights are
//! transformers' Conv1D, stored `[in, out]` (bigcode's are Linear `[out, in]`);
//! every head has its own keys and values (no multi-query); attention goes
//! through [`super::attention::attend`], which reports every hook point.
//!
//! The attention options, as transformers 5.24 computes them:
//! - `scale_attn_weights` and `scale_attn_by_inverse_layer_idx` fold into one
//!   factor, `head_dim ** -0.5 / (layer + 1)`, applied once to QK^T (4.x divided
//!   twice, rounding twice).
//! - `reorder_and_upcast_attn` runs `baddbmm(alpha=scale)` on q and k cast to
//!   f32: for an f32 model that is the same QK^T * scale, so it changes nothing here.

use candle_core::{Device, Tensor};
use candle_nn::{Activation, Embedding, LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::attention::{attend, merge_heads, record_result, record_value_norm, split_heads, Mask};
use super::{check_geometry, inverse_sqrt, layer_norm, ArchInfo, Architecture, AttentionModel};
use crate::error::Result;
use crate::hooks::HookSink;
use crate::tokenize::Encoded;

/// The fields of a GPT-2 config.json the forward pass needs, with GPT2Config's
/// defaults (openai-community/gpt2's config.json leaves several out).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    #[serde(default = "default_positions")]
    pub n_positions: usize,
    #[serde(default = "default_hidden")]
    pub n_embd: usize,
    #[serde(default = "default_count")]
    pub n_layer: usize,
    #[serde(default = "default_count")]
    pub n_head: usize,
    /// The MLP width; `null` means 4 * n_embd.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
}

fn default_vocab() -> usize {
    50257
}

fn default_positions() -> usize {
    1024
}

fn default_hidden() -> usize {
    768
}

fn default_count() -> usize {
    12
}

fn default_activation() -> Activation {
    Activation::NewGelu
}

fn default_eps() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

impl Architecture for Config {
    fn info(&self) -> ArchInfo {
        let (hidden, heads) = (self.n_embd, self.n_head);
        let head_dim = hidden / heads;
        ArchInfo {
            family: "gpt2",
            layers: self.n_layer,
            heads,
            kv_heads: heads,
            head_dim,
            hidden,
            max_positions: self.n_positions,
            vocab_size: self.vocab_size,
            causal: true,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_geometry(self.n_embd, self.n_head, self.n_layer)
    }

    fn max_tokens(&self) -> usize {
        self.n_positions
    }

    fn build(&self, vb: VarBuilder<'static>) -> Result<Box<dyn AttentionModel>> {
        Ok(Box::new(Gpt2::load(self, vb)?))
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    /// What QK^T is multiplied by in this layer.
    scale: f64,
}

pub struct Gpt2 {
    info: ArchInfo,
    act: Activation,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

/// transformers' Conv1D (`x @ W + b`, W stored `[input, output]`) as a Linear, whose
/// weight is `[output, input]`: hook_result then reads it like every other model's.
fn conv1d(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((input, output), "weight")?;
    let bias = vb.get(output, "bias")?;
    Ok(Linear::new(weight.t()?, Some(bias)))
}

impl Gpt2 {
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        // GPT2LMHeadModel and the other task models keep the body under `transformer.`.
        let vb = if vb.contains_tensor("wte.weight") { vb } else { vb.pp("transformer") };
        let hidden = config.n_embd;
        let inner = config.n_inner.unwrap_or(4 * hidden);
        let heads = config.n_head;
        let head_dim = hidden / heads;
        let eps = config.layer_norm_epsilon;
        let blocks = (0..config.n_layer)
            .map(|index| {
                let vb = vb.pp(format!("h.{index}"));
                let mut scale = if config.scale_attn_weights { inverse_sqrt(head_dim) } else { 1.0 };
                if config.scale_attn_by_inverse_layer_idx {
                    scale /= (index + 1) as f64;
                }
                Ok(Block {
                    ln_1: layer_norm(hidden, eps, vb.pp("ln_1"))?,
                    c_attn: conv1d(hidden, 3 * hidden, vb.pp("attn.c_attn"))?,
                    c_proj: conv1d(hidden, hidden, vb.pp("attn.c_proj"))?,
                    ln_2: layer_norm(hidden, eps, vb.pp("ln_2"))?,
                    c_fc: conv1d(hidden, inner, vb.pp("mlp.c_fc"))?,
                    mlp_proj: conv1d(inner, hidden, vb.pp("mlp.c_proj"))?,
                    scale,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: Architecture::info(config),
            act: config.activation_function,
            wte: candle_nn::embedding(config.vocab_size, hidden, vb.pp("wte"))?,
            wpe: candle_nn::embedding(config.n_positions, hidden, vb.pp("wpe"))?,
            blocks,
            ln_f: layer_norm(hidden, eps, vb.pp("ln_f"))?,
        })
    }
}

impl AttentionModel for Gpt2 {
    fn info(&self) -> &ArchInfo {
        &self.info
    }

    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor> {
        let device = Device::Cpu;
        let seq = input.len();
        let ids = Tensor::new(input.ids.as_slice(), &device)?;
        let positions = Tensor::arange(0u32, seq as u32, &device)?;
        let mut hidden = (self.wte.forward(&ids)? + self.wpe.forward(&positions)?)?;
        let (heads, width) = (self.info.heads, self.info.hidden);
        let last = sink.last_layer().unwrap_or(usize::MAX);
        for (index, block) in self.blocks.iter().enumerate() {
            let qkv = block.c_attn.forward(&block.ln_1.forward(&hidden)?)?;
            let q = split_heads(&qkv.narrow(1, 0, width)?, heads)?;
            let k = split_heads(&qkv.narrow(1, width, width)?, heads)?;
            let v = split_heads(&qkv.narrow(1, 2 * width, width)?, heads)?;
            let z = attend(index, &q, &k, &v, Mask::Causal { window: None }, block.scale, sink)?;
            record_result(index, &z, block.c_proj.weight(), sink)?;
            record_value_norm(index, &v, block.c_proj.weight(), sink)?;
            hidden = (block.c_proj.forward(&merge_heads(&z)?)? + hidden)?;
            let inner = self.act.forward(&block.c_fc.forward(&block.ln_2.forward(&hidden)?)?)?;
            hidden = (block.mlp_proj.forward(&inner)? + hidden)?;
            if index >= last && index + 1 < self.blocks.len() {
                return Ok(hidden);
            }
        }
        Ok(self.ln_f.forward(&hidden)?)
    }
}
