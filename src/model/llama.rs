//! The LLaMA family (`model_type` llama, mistral, qwen2) with attention hooks,
//! from a Hugging Face folder or a GGUF file (see [`super::gguf`]).
//!
//! Follows transformers 5.24 `models/llama/modeling_llama.py` (with
//! `models/mistral/modeling_mistral.py`, `models/qwen2/modeling_qwen2.py`,
//! `modeling_rope_utils.py` and `masking_utils.py` for what those change) for
//! the arithmetic, and candle-transformers 0.11 `models/llama.rs` for the
//! weight names and the candle idioms. What it changes from candle's file:
//! attention goes through [`super::attention::attend`] (every hook point is
//! reported, the mask is explicit: causal, or causal within a sliding window,
//! as transformers' eager path builds it), RoPE's inverse frequencies are
//! computed as transformers computes them (so the f32 values are the same),
//! there is no KV cache and no LM head (attnmap needs the maps and the final
//! hidden states only), and each projection may be a quantized matmul for
//! GGUF's `--quantized`.
//!
//! The three families differ only in configuration:
//! - llama: `attention_bias` on q/k/v/o, `mlp_bias`, RoPE scaling `linear` or `llama3`;
//! - mistral: `sliding_window` on every layer (4096 unless config.json says otherwise);
//! - qwen2: bias on q/k/v (never o), `use_sliding_window` with `max_window_layers` or `layer_types`.

use std::collections::HashMap;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use candle_nn::{Activation, Embedding, Linear, RmsNorm, VarBuilder};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::attention::{attend, merge_heads, record_result, record_value_norm, split_heads, Mask};
use super::blocks::Blocks;
use super::kernels;
use super::{ArchInfo, AttentionModel};
use crate::error::{Error, Result};
use crate::hooks::{HookKind, HookPoint, HookSink};
use crate::tokenize::Encoded;

/// Which member of the family: decides biases and sliding-window rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
}

impl Family {
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
        }
    }
}

/// How RoPE's frequencies are scaled (transformers' `rope_parameters["rope_type"]`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `default`: the original RoPE.
    None,
    /// `linear`: every inverse frequency divided by `factor`.
    Linear { factor: f32 },
    /// `llama3` (Llama 3.1): low frequencies divided by `factor`, a smooth ramp between.
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_max_position_embeddings: f32 },
}

/// Everything the forward pass needs, whichever file it came from.
#[derive(Debug, Clone)]
pub struct Config {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub hidden_act: Activation,
    pub max_positions: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    /// Bias on q, k and v.
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per layer: `Some(w)` lets a query see only the `w` most recent keys (itself included).
    pub sliding_window: Vec<Option<usize>>,
}

/// config.json as the three families write it (transformers 4.x and 5.x spellings).
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<Activation>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    /// transformers 4.x: `{"type"|"rope_type": ..., "factor": ...}`.
    rope_scaling: Option<Value>,
    /// transformers 5.x: `{"rope_type": ..., "rope_theta": ..., ...}`.
    rope_parameters: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    /// Absent (family default) is not the same as `null` (no window).
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    #[serde(default)]
    use_sliding_window: bool,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl Config {
    /// The layer and head ranges this config describes (no weights needed).
    pub fn arch_info(&self) -> ArchInfo {
        ArchInfo {
            family: self.family.name(),
            layers: self.layers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            hidden: self.hidden_size,
            max_positions: self.max_positions,
            vocab_size: self.vocab_size,
            causal: true,
        }
    }

    /// Read a transformers config.json of `family`, with that family's defaults
    /// (transformers 5.24 `configuration_{llama,mistral,qwen2}.py`). The error
    /// is a message about config.json.
    pub fn from_json(text: &str, family: Family) -> std::result::Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| format!("is not a valid {} config: {e}", family.name()))?;
        let heads = raw.num_attention_heads;
        if heads == 0 || raw.num_hidden_layers == 0 || raw.hidden_size == 0 {
            return Err(format!(
                "has an impossible shape: hidden_size {}, {} heads, {} layers",
                raw.hidden_size, heads, raw.num_hidden_layers
            ));
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(match family {
            Family::Llama => heads,
            Family::Mistral => 8,
            Family::Qwen2 => 32,
        });
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size / heads);
        let max_positions = raw.max_position_embeddings.unwrap_or(match family {
            Family::Llama => 2048,
            Family::Mistral => 4096 * 32,
            Family::Qwen2 => 32768,
        });
        let (rope_theta, rope_scaling) = rope_from_json(&raw, max_positions)?;
        let layers = raw.num_hidden_layers;
        super::check_counts(&[
            ("hidden_size", raw.hidden_size),
            ("num_attention_heads", heads),
            ("num_key_value_heads", kv_heads),
            ("head_dim", head_dim),
            ("num_hidden_layers", layers),
        ])?;
        let sliding_window = match family {
            Family::Llama => vec![None; layers],
            Family::Mistral => vec![raw.sliding_window.unwrap_or(Some(4096)); layers],
            Family::Qwen2 => {
                let window = if raw.use_sliding_window { raw.sliding_window.unwrap_or(Some(4096)) } else { None };
                let types = match &raw.layer_types {
                    Some(types) => types.clone(),
                    None => {
                        let first_sliding = raw.max_window_layers.unwrap_or(28);
                        (0..layers)
                            .map(|layer| if window.is_some() && layer >= first_sliding { "sliding_attention" } else { "full_attention" }.to_string())
                            .collect()
                    }
                };
                if types.len() != layers {
                    return Err(format!("has {} layer_types for {layers} layers; list one per layer", types.len()));
                }
                types
                    .iter()
                    .map(|kind| match kind.as_str() {
                        "full_attention" => Ok(None),
                        "sliding_attention" => window.map(Some).ok_or_else(|| {
                            "has a sliding_attention layer but no sliding_window (set use_sliding_window and sliding_window)".to_string()
                        }),
                        other => Err(format!("has layer type {other:?}; qwen2 layers are full_attention or sliding_attention")),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?
            }
        };
        let (qkv_bias, o_bias, mlp_bias) = match family {
            Family::Llama => (raw.attention_bias, raw.attention_bias, raw.mlp_bias),
            Family::Mistral => (false, false, false),
            Family::Qwen2 => (true, false, false),
        };
        let config = Config {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            layers,
            heads,
            kv_heads,
            head_dim,
            hidden_act: raw.hidden_act.unwrap_or(Activation::Silu),
            max_positions,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            qkv_bias,
            o_bias,
            mlp_bias,
            sliding_window,
        };
        config.check()?;
        Ok(config)
    }

    /// Shapes the forward pass relies on.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || self.head_dim == 0 || self.layers == 0 {
            return Err(format!("has an impossible shape: {} heads, {} KV heads, head_dim {}, {} layers", self.heads, self.kv_heads, self.head_dim, self.layers));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!("has {} query heads and {} KV heads; the query heads must be a multiple of the KV heads", self.heads, self.kv_heads));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("has head_dim {}; RoPE needs an even head dimension", self.head_dim));
        }
        if self.sliding_window.contains(&Some(0)) {
            return Err("has sliding_window 0; a window must hold at least the token itself".into());
        }
        Ok(())
    }

    /// RoPE's inverse frequencies, as f32 values equal to transformers' (`inv_freq`).
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim;
        let base = inv_freq_default(self.rope_theta, dim);
        match self.rope_scaling {
            RopeScaling::None => base,
            // modeling_rope_utils._compute_linear_scaling_rope_parameters
            RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
            // modeling_rope_utils._compute_llama3_parameters, op for op in f32
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.into_iter()
                    .map(|inv_freq| {
                        let wavelen = (2.0 * std::f64::consts::PI) as f32 / inv_freq;
                        let scaled = if wavelen > low_wavelen { inv_freq / factor } else { inv_freq };
                        let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
                        // torch: ~(wavelen < high) * ~(wavelen > low); wavelengths are never NaN.
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            smoothed
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }
}

/// `1 / base^(arange(0, dim, 2) / dim)`: the exponent in f32, the power in f64
/// rounded to f32 (what torch does for `float ** f32 tensor`), then an f32 division.
fn inv_freq_default(base: f64, dim: usize) -> Vec<f32> {
    (0..dim)
        .step_by(2)
        .map(|i| {
            let exponent = i as f32 / dim as f32;
            1.0f32 / base.powf(exponent as f64) as f32
        })
        .collect()
}

/// rope_theta and the scaling, from transformers 5's `rope_parameters` or 4.x's `rope_theta` + `rope_scaling`.
fn rope_from_json(raw: &RawConfig, max_positions: usize) -> std::result::Result<(f64, RopeScaling), String> {
    // convert_rope_params_to_dict: `rope_scaling or rope_parameters`.
    let params = match (&raw.rope_scaling, &raw.rope_parameters) {
        (Some(Value::Object(p)), _) => Some(p),
        (_, Some(Value::Object(p))) => Some(p),
        (Some(Value::Null) | None, Some(Value::Null) | None) => None,
        _ => return Err("has a rope_scaling/rope_parameters that is not an object".into()),
    };
    let empty = serde_json::Map::new();
    let params = params.unwrap_or(&empty);
    if params.values().any(Value::is_object) {
        return Err("has per-layer-type rope_parameters, which the llama family does not use".into());
    }
    let number = |key: &str| params.get(key).and_then(Value::as_f64);
    let theta = number("rope_theta").or(raw.rope_theta).unwrap_or(10000.0);
    let kind = params.get("rope_type").or_else(|| params.get("type")).and_then(Value::as_str).unwrap_or("default");
    let required = |key: &str| number(key).map(|v| v as f32).ok_or_else(|| format!("has rope type {kind:?} without its {key:?}"));
    let partial = number("partial_rotary_factor").unwrap_or(1.0);
    if kind != "default" && partial != 1.0 {
        return Err(format!("has partial_rotary_factor {partial} with rope type {kind:?}, which attnmap does not support"));
    }
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: required("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: required("factor")?,
            low_freq_factor: required("low_freq_factor")?,
            high_freq_factor: required("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings").unwrap_or(max_positions as f64) as f32,
        },
        other => {
            return Err(format!("has RoPE scaling type {other:?}, which attnmap does not support (supported: default, linear, llama3)"));
        }
    };
    Ok((theta, scaling))
}

/// A linear layer: dense f32, a quantized matmul (GGUF `--quantized`), or GGUF
/// blocks dequantized to f32 each time the layer runs (the default for GGUF:
/// the same f32 arithmetic as a dense copy, without holding one for every layer).
pub(crate) enum Projection {
    Dense(Linear),
    Quantized { matmul: QMatMul, weight: std::sync::Arc<QTensor>, bias: Option<Tensor> },
    Dequantized { weight: Blocks, bias: Option<Tensor> },
}

impl Projection {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Projection::Dense(linear) => linear.forward(x)?,
            // Dequantizing is exact and deterministic, so this is the dense path's arithmetic bit for bit.
            Projection::Dequantized { weight, bias } => weight.linear(x, bias.as_ref())?,
            Projection::Quantized { matmul, bias, .. } => {
                let out = matmul.forward(x)?;
                match bias {
                    Some(bias) => out.broadcast_add(bias)?,
                    None => out,
                }
            }
        })
    }

    /// The weight `[out, in]` in f32 (dequantized on demand for `hook_result`).
    fn weight(&self) -> Result<Tensor> {
        Ok(match self {
            Projection::Dense(linear) => linear.weight().clone(),
            Projection::Quantized { weight, .. } => weight.dequantize(&Device::Cpu)?,
            Projection::Dequantized { weight, .. } => weight.dequantize()?,
        })
    }
}

/// The tensors of a model, by Hugging Face name without the `model.` prefix.
pub(crate) struct Tensors<'a> {
    /// f32 tensors (safetensors, or GGUF dequantized and renamed).
    pub dense: VarBuilder<'a>,
    /// Projection weights for quantized matmuls (GGUF `--quantized`).
    pub quantized: HashMap<String, QTensor>,
    /// GGUF matrices left in the mapped file, dequantized to f32 when used.
    pub blocks: HashMap<String, Blocks>,
}

impl Tensors<'_> {
    fn projection(&mut self, prefix: &str, input: usize, output: usize, bias: bool) -> Result<Projection> {
        let vb = self.dense.pp(prefix);
        let bias = if bias { Some(vb.get(output, "bias")?) } else { None };
        let wrong_shape = |dims: &[usize]| candle_core::Error::Msg(format!("{prefix}.weight has shape {dims:?}, expected [{output}, {input}]"));
        if let Some(weight) = self.blocks.remove(&format!("{prefix}.weight")) {
            if weight.dims() != [output, input] {
                return Err(wrong_shape(&weight.dims()).into());
            }
            return Ok(Projection::Dequantized { weight, bias });
        }
        if let Some(weight) = self.quantized.remove(&format!("{prefix}.weight")) {
            if weight.shape().dims() != [output, input] {
                return Err(wrong_shape(weight.shape().dims()).into());
            }
            let weight = std::sync::Arc::new(weight);
            return Ok(Projection::Quantized { matmul: QMatMul::from_arc(weight.clone())?, weight, bias });
        }
        let weight = vb.get((output, input), "weight")?;
        Ok(Projection::Dense(Linear::new(weight, bias)))
    }

    fn rms_norm(&self, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm::new(self.dense.get(size, name)?, eps))
    }
}

struct Layer {
    input_norm: RmsNorm,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    post_norm: RmsNorm,
    gate: Projection,
    up: Projection,
    down: Projection,
    window: Option<usize>,
}

/// The token embedding: an f32 table, or (GGUF) the file's blocks, of which only
/// the rows of the input's tokens are dequantized.
enum Embed {
    Dense(Embedding),
    Rows(Blocks),
}

impl Embed {
    fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        match self {
            Embed::Dense(table) => Ok(table.forward(&Tensor::new(ids, &Device::Cpu)?)?),
            // forward() has checked every id against the vocabulary.
            Embed::Rows(table) => Ok(table.rows(&ids.iter().map(|&id| id as usize).collect::<Vec<_>>())?),
        }
    }
}

pub struct Llama {
    info: ArchInfo,
    act: Activation,
    embed: Embed,
    layers: Vec<Layer>,
    norm: RmsNorm,
    inv_freq: Vec<f32>,
}

impl Llama {
    pub(crate) fn load(config: &Config, mut tensors: Tensors) -> Result<Self> {
        // *ForCausalLM checkpoints keep the decoder under `model.`.
        if !tensors.dense.contains_tensor("embed_tokens.weight") && tensors.dense.contains_tensor("model.embed_tokens.weight") {
            tensors.dense = tensors.dense.pp("model");
        }
        let hidden = config.hidden_size;
        let (q_width, kv_width) = (config.heads * config.head_dim, config.kv_heads * config.head_dim);
        let eps = config.rms_norm_eps;
        let embed = match tensors.blocks.remove("embed_tokens.weight") {
            Some(table) if table.dims() == [config.vocab_size, hidden] => Embed::Rows(table),
            Some(table) => {
                return Err(candle_core::Error::Msg(format!("embed_tokens.weight has shape {:?}, expected [{}, {hidden}]", table.dims(), config.vocab_size)).into())
            }
            None => Embed::Dense(Embedding::new(tensors.dense.get((config.vocab_size, hidden), "embed_tokens.weight")?, hidden)),
        };
        let layers = (0..config.layers)
            .map(|index| {
                let at = |name: &str| format!("layers.{index}.{name}");
                Ok(Layer {
                    input_norm: tensors.rms_norm(&at("input_layernorm.weight"), hidden, eps)?,
                    q: tensors.projection(&at("self_attn.q_proj"), hidden, q_width, config.qkv_bias)?,
                    k: tensors.projection(&at("self_attn.k_proj"), hidden, kv_width, config.qkv_bias)?,
                    v: tensors.projection(&at("self_attn.v_proj"), hidden, kv_width, config.qkv_bias)?,
                    o: tensors.projection(&at("self_attn.o_proj"), q_width, hidden, config.o_bias)?,
                    post_norm: tensors.rms_norm(&at("post_attention_layernorm.weight"), hidden, eps)?,
                    gate: tensors.projection(&at("mlp.gate_proj"), hidden, config.intermediate_size, config.mlp_bias)?,
                    up: tensors.projection(&at("mlp.up_proj"), hidden, config.intermediate_size, config.mlp_bias)?,
                    down: tensors.projection(&at("mlp.down_proj"), config.intermediate_size, hidden, config.mlp_bias)?,
                    window: config.sliding_window.get(index).copied().flatten(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = tensors.rms_norm("norm.weight", hidden, eps)?;
        Ok(Self {
            info: config.arch_info(),
            act: config.hidden_act,
            embed,
            layers,
            norm,
            inv_freq: config.inv_freq(),
        })
    }

    /// cos and sin of every position's angles, `[seq, head_dim / 2]` each
    /// (LlamaRotaryEmbedding.forward: angles `position * inv_freq` in f32).
    fn rotary(&self, seq: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for position in 0..seq {
            for &inv_freq in &self.inv_freq {
                let angle = position as f32 * inv_freq;
                cos.push((angle as f64).cos() as f32);
                sin.push((angle as f64).sin() as f32);
            }
        }
        Ok((Tensor::from_vec(cos, (seq, half), &Device::Cpu)?, Tensor::from_vec(sin, (seq, half), &Device::Cpu)?))
    }
}

fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&x.unsqueeze(0)?, cos, sin)?.squeeze(0)?)
}

impl AttentionModel for Llama {
    fn info(&self) -> &ArchInfo {
        &self.info
    }

    fn forward(&self, input: &Encoded, sink: &mut dyn HookSink) -> Result<Tensor> {
        let seq = input.len();
        if let Some(&bad) = input.ids.iter().find(|&&id| id as usize >= self.info.vocab_size) {
            return Err(Error::Input(format!("token id {bad} is outside this model's vocabulary of {} tokens; the tokenizer does not match the weights", self.info.vocab_size)));
        }
        let mut hidden = self.embed.forward(&input.ids)?;
        let (cos, sin) = self.rotary(seq)?;
        let (heads, kv_heads) = (self.info.heads, self.info.kv_heads);
        let scale = 1.0 / (self.info.head_dim as f64).sqrt();
        let last = sink.last_layer().unwrap_or(usize::MAX);
        for (index, layer) in self.layers.iter().enumerate() {
            let normed = layer.input_norm.forward(&hidden)?;
            let q = rope(&split_heads(&layer.q.forward(&normed)?, heads)?, &cos, &sin)?;
            let k = rope(&split_heads(&layer.k.forward(&normed)?, kv_heads)?, &cos, &sin)?;
            let v = split_heads(&layer.v.forward(&normed)?, kv_heads)?;
            let mask = Mask::Causal { window: layer.window };
            let z = attend(index, &q, &k, &v, mask, scale, sink)?;
            // The output weight may have to be dequantized: only when a hook needs it.
            if sink.wants(HookPoint::new(index, HookKind::Result)) || sink.wants(HookPoint::new(index, HookKind::ValueNorm)) {
                let w_o = layer.o.weight()?;
                record_result(index, &z, &w_o, sink)?;
                record_value_norm(index, &v, &w_o, sink)?;
            }
            hidden = kernels::add(&hidden, &layer.o.forward(&merge_heads(&z)?)?)?;
            let normed = layer.post_norm.forward(&hidden)?;
            let (gate, up) = (layer.gate.forward(&normed)?, layer.up.forward(&normed)?);
            let gated = match self.act {
                Activation::Silu => kernels::silu_mul(&gate, &up)?,
                act => (act.forward(&gate)? * up)?,
            };
            hidden = kernels::add(&hidden, &layer.down.forward(&gated)?)?;
            if index >= last && index + 1 < self.layers.len() {
                return Ok(hidden);
            }
        }
        Ok(self.norm.forward(&hidden)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "max_position_embeddings": 131072}"#;

    #[test]
    fn legacy_and_v5_rope_spellings_agree() {
        let legacy = Config::from_json(LEGACY, Family::Llama).unwrap();
        let v5 = LEGACY.replace(r#""rope_theta": 500000.0, "rope_scaling""#, r#""rope_parameters""#).replace(r#""factor": 8.0,"#, r#""factor": 8.0, "rope_theta": 500000.0,"#);
        let v5 = Config::from_json(&v5, Family::Llama).unwrap();
        assert_eq!(legacy.rope_theta, 500000.0);
        assert_eq!(legacy.rope_scaling, v5.rope_scaling);
        assert_eq!(legacy.rope_theta, v5.rope_theta);
        assert_eq!((legacy.kv_heads, legacy.head_dim), (1, 4));
    }

    #[test]
    fn unknown_rope_type_is_named() {
        let text = LEGACY.replace("\"llama3\"", "\"yarn\"");
        let error = Config::from_json(&text, Family::Llama).unwrap_err();
        assert!(error.contains("\"yarn\"") && error.contains("linear, llama3"), "{error}");
    }

    #[test]
    fn sliding_windows_follow_each_family() {
        let base = r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1"#;
        let mistral = Config::from_json(&format!("{base}}}"), Family::Mistral).unwrap();
        assert_eq!(mistral.sliding_window, vec![Some(4096); 3]);
        let mistral = Config::from_json(&format!("{base}, \"sliding_window\": null}}"), Family::Mistral).unwrap();
        assert_eq!(mistral.sliding_window, vec![None; 3]);
        let qwen = Config::from_json(&format!("{base}, \"sliding_window\": 5}}"), Family::Qwen2).unwrap();
        assert_eq!(qwen.sliding_window, vec![None; 3], "use_sliding_window is off by default");
        let qwen = Config::from_json(&format!("{base}, \"sliding_window\": 5, \"use_sliding_window\": true, \"max_window_layers\": 1}}"), Family::Qwen2).unwrap();
        assert_eq!(qwen.sliding_window, vec![None, Some(5), Some(5)]);
    }

    #[test]
    fn window_mask_keeps_the_last_w_keys() {
        let mask = Mask::Causal { window: Some(2) };
        assert_eq!(mask.visible(3, 4), 2..4);
        assert_eq!(mask.visible(0, 4), 0..1);
    }
}
