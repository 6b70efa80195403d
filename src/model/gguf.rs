//! GGUF files (llama.cpp's format): config, tokenizer and weights in one file,
//! read with candle's `quantized::gguf_file` and turned into the same
//! [`llama::Llama`] a Hugging Face folder loads.
//!
//! What llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel`) does to
//! a checkpoint, and what this file undoes, as transformers 5.24 does when it
//! loads a GGUF (`integrations/gguf`):
//! - names: `blk.{i}.attn_q` for `layers.{i}.self_attn.q_proj`, and so on;
//! - q and k rows (weights and biases) are permuted per head from RoPE's
//!   "half split" order to llama.cpp's interleaved order: undone here, so one
//!   RoPE serves both sources and every per-dimension value is in HF order;
//! - weights are quantized: dequantized to f32 by default (the maps are then
//!   those of the weights in the file, computed as transformers computes them),
//!   or kept for candle's quantized matmuls with `--quantized`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, VarBuilder};
use memmap2::Mmap;

use super::blocks::Blocks;
use super::llama::{Config, Family, Llama, RopeScaling, Tensors};
use super::{gguf_tokenizer, LoadOptions, Loaded};
use crate::error::{first_line, Error, Result};

/// `general.architecture` values attnmap can load.
pub const SUPPORTED: &[&str] = &["llama"];

/// A GGUF file's metadata and tensor directory over the memory-mapped file:
/// tensors are decoded from the page cache when a layer needs them, so the file
/// is never copied into memory whole.
pub(crate) struct GgufFile {
    pub path: PathBuf,
    content: Content,
    map: Arc<Mmap>,
}

impl GgufFile {
    /// Map the file and parse its header (metadata and tensor directory) from memory:
    /// tens of thousands of vocabulary strings then cost no system call each.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::model_file(path, format!("cannot be read: {e}")))?;
        // SAFETY: the map is read-only; as in llama.cpp and candle, a file rewritten while
        // attnmap runs is outside what it guards against.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::model_file(path, format!("cannot be read: {e}")))?;
        let file_len = map.len() as u64;
        let invalid = |why: String| Error::model_file(path, format!("is not a valid GGUF file ({why}); download it again or convert it with llama.cpp"));
        let content = crate::error::contain_panics(|| Content::read(&mut Cursor::new(&map[..])))
            .ok_or_else(|| invalid("its header is malformed".into()))?
            .map_err(|e| invalid(first_line(&e)))?;
        let gguf = Self { path: path.to_path_buf(), content, map: Arc::new(map) };
        gguf.check_extents(file_len)?;
        Ok(gguf)
    }

    /// Every tensor must lie inside the file: a truncated download is named
    /// here, before anything is dequantized.
    fn check_extents(&self, file_len: u64) -> Result<()> {
        for (name, info) in &self.content.tensor_infos {
            let elements = info.shape.dims().iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let block = info.ggml_dtype.block_size();
            let bytes = elements
                .filter(|n| n % block == 0)
                .and_then(|n| (n / block).checked_mul(info.ggml_dtype.type_size()))
                .ok_or_else(|| Error::model_file(&self.path, format!("is not a valid GGUF file: tensor {name} has an impossible shape {:?}", info.shape.dims())))?;
            let end = self.content.tensor_data_offset.checked_add(info.offset).and_then(|start| start.checked_add(bytes as u64));
            if end.is_none_or(|end| end > file_len) {
                return Err(Error::model_file(
                    &self.path,
                    format!("is truncated: tensor {name} ends past the end of the file ({file_len} bytes); download it again"),
                ));
            }
        }
        Ok(())
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    fn missing(&self, key: &str) -> Error {
        Error::model_file(&self.path, format!("has no metadata key {key}; the file is incomplete or was not written by llama.cpp's converter"))
    }

    fn wrong_type(&self, key: &str, wanted: &str) -> Error {
        Error::model_file(&self.path, format!("metadata key {key} is not {wanted}; the file is corrupt"))
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        match self.metadata().get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.wrong_type(key, "a string")),
            None => Err(self.missing(key)),
        }
    }

    pub fn optional_string(&self, key: &str) -> Result<Option<&str>> {
        if self.metadata().contains_key(key) {
            return self.string(key).map(Some);
        }
        Ok(None)
    }

    pub fn count(&self, key: &str) -> Result<usize> {
        self.optional_count(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn optional_count(&self, key: &str) -> Result<Option<usize>> {
        let Some(value) = self.metadata().get(key) else { return Ok(None) };
        let number = match value {
            Value::U8(v) => Some(*v as u64),
            Value::U16(v) => Some(*v as u64),
            Value::U32(v) => Some(*v as u64),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        };
        number.and_then(|n| usize::try_from(n).ok()).map(Some).ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    pub fn number(&self, key: &str) -> Result<f64> {
        self.optional_number(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn optional_number(&self, key: &str) -> Result<Option<f64>> {
        match self.metadata().get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v as f64)),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(_) => self.optional_count(key).map(|n| n.map(|n| n as f64)),
        }
    }

    pub fn optional_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.metadata().get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type(key, "a boolean")),
        }
    }

    /// An array metadata value.
    pub fn array(&self, key: &str) -> Result<&[Value]> {
        match self.metadata().get(key) {
            Some(Value::Array(values)) => Ok(values),
            Some(_) => Err(self.wrong_type(key, "an array")),
            None => Err(self.missing(key)),
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn no_tensor(&self, name: &str) -> Error {
        Error::model_file(&self.path, format!("has no tensor {name}; the file is incomplete or not a llama model"))
    }

    /// A small tensor (norms, biases) decoded to f32 now.
    fn dense(&self, name: &str) -> Result<Tensor> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| self.no_tensor(name))?;
        let start = (self.content.tensor_data_offset + info.offset) as usize;
        let dims = info.shape.dims().to_vec();
        let bytes = dims.iter().product::<usize>() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        // check_extents has put every tensor inside the file.
        qtensor_from_ggml(info.ggml_dtype, &self.map[start..start + bytes], dims, &Device::Cpu)
            .and_then(|tensor| tensor.dequantize(&Device::Cpu))
            .map_err(|e| Error::model_file(&self.path, format!("cannot read tensor {name} ({}); download the file again", first_line(&e))))
    }

    /// A matrix left in the file's blocks, to be decoded when it is used.
    fn blocks(&self, name: &str) -> Result<Blocks> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| self.no_tensor(name))?;
        let start = (self.content.tensor_data_offset + info.offset) as usize;
        let bad = |why: String| Error::model_file(&self.path, format!("tensor {name} cannot be decoded ({why})"));
        let &[rows, columns] = info.shape.dims() else { return Err(bad(format!("it is not a matrix: {:?}", info.shape.dims()))) };
        Blocks::new(&self.map, start, info.ggml_dtype, rows, columns).map_err(|e| bad(first_line(&e)))
    }

    /// How many tensors of each quantization type the file holds, e.g. "Q4_1 x210, F32 x61, Q8_0 x1".
    pub fn dtype_summary(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for info in self.content.tensor_infos.values() {
            let name = format!("{:?}", info.ggml_dtype);
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.iter().map(|(name, count)| format!("{name} x{count}")).collect::<Vec<_>>().join(", ")
    }
}

/// Open a GGUF file of an architecture attnmap supports and read its config from the metadata.
fn open_supported(path: &Path) -> Result<(GgufFile, String, Config)> {
    let gguf = GgufFile::open(path)?;
    let architecture = gguf.string("general.architecture")?.to_string();
    if !SUPPORTED.contains(&architecture.as_str()) {
        return Err(Error::model_file(
            path,
            format!("has general.architecture {architecture:?}, which attnmap does not support; supported GGUF architectures: {}", SUPPORTED.join(", ")),
        ));
    }
    let config = config_from_metadata(&gguf, &architecture)?;
    Ok((gguf, architecture, config))
}

/// Load a GGUF model and its tokenizer; also returns how many layers the tensor names hold.
pub fn load(path: &Path, options: &LoadOptions) -> Result<(Loaded, usize)> {
    let (gguf, architecture, config) = open_supported(path)?;
    let tokenizer = gguf_tokenizer::from_gguf(&gguf, config.max_positions)?;
    let summary = gguf.dtype_summary();
    let tensors = read_tensors(&gguf, &config, options.quantized)?;
    let vb = VarBuilder::from_tensors(tensors.dense, DType::F32, &Device::Cpu);
    let model = Llama::load(&config, Tensors { dense: vb, quantized: tensors.quantized, blocks: tensors.blocks }).map_err(|e| match e {
        Error::Compute(inner) => Error::model_file(path, format!("does not hold the tensors its metadata describes ({})", first_line(&inner))),
        other => other,
    })?;
    let weight_layers = super::weights::layers_in(gguf.content.tensor_infos.keys().map(String::as_str));
    Ok((Loaded { model: Box::new(model), tokenizer, model_type: architecture, precision: precision(&summary, options), warnings: Vec::new() }, weight_layers))
}

/// How the weights are computed with, for `info` and the manifest.
fn precision(summary: &str, options: &LoadOptions) -> String {
    if options.quantized {
        format!("quantized matmuls on the file's {summary} blocks (--quantized: maps differ slightly)")
    } else {
        format!("f32, dequantized from the file's {summary}")
    }
}

/// What `info` prints about a GGUF model, from the header alone (no tensor is read).
pub fn describe(path: &Path, options: &LoadOptions) -> Result<super::Description> {
    let (gguf, architecture, config) = open_supported(path)?;
    Ok(super::Description { info: config.arch_info(), model_type: architecture, precision: precision(&gguf.dtype_summary(), options) })
}

/// The llama config from `{arch}.*` metadata keys (llama.cpp's names).
fn config_from_metadata(gguf: &GgufFile, arch: &str) -> Result<Config> {
    let key = |name: &str| format!("{arch}.{name}");
    let hidden = gguf.count(&key("embedding_length"))?;
    let heads = gguf.count(&key("attention.head_count"))?;
    let layers = gguf.count(&key("block_count"))?;
    super::check_counts(&[("embedding_length", hidden), ("attention.head_count", heads), ("block_count", layers)])
        .map_err(|message| Error::model_file(&gguf.path, message))?;
    if heads == 0 || layers == 0 || hidden % heads != 0 && gguf.optional_count(&key("attention.key_length"))?.is_none() {
        return Err(Error::model_file(&gguf.path, format!("has an impossible shape: embedding_length {hidden}, {heads} heads, {layers} blocks")));
    }
    // llama.cpp: head_count_kv defaults to head_count, key_length to embedding_length / head_count.
    let kv_heads = gguf.optional_count(&key("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = gguf.optional_count(&key("attention.key_length"))?.unwrap_or(hidden / heads.max(1));
    super::check_counts(&[("attention.head_count_kv", kv_heads), ("attention.key_length", head_dim)])
        .map_err(|message| Error::model_file(&gguf.path, message))?;
    let rope_dims = gguf.optional_count(&key("rope.dimension_count"))?.unwrap_or(head_dim);
    if rope_dims != head_dim {
        return Err(Error::model_file(&gguf.path, format!("rotates {rope_dims} of {head_dim} head dimensions ({arch}.rope.dimension_count); partial RoPE is not supported")));
    }
    if gguf.optional_count(&key("expert_count"))?.unwrap_or(0) > 0 {
        return Err(Error::model_file(&gguf.path, "is a mixture-of-experts model, which attnmap does not support"));
    }
    if gguf.has_tensor("rope_freqs.weight") {
        return Err(Error::model_file(&gguf.path, "carries rope_freqs.weight (Llama 3.1-style RoPE scaling stored as factors), which attnmap does not support"));
    }
    let rope_scaling = match gguf.optional_string(&key("rope.scaling.type"))? {
        None | Some("none") => RopeScaling::None,
        Some("linear") => {
            let factor = gguf.number(&key("rope.scaling.factor"))? as f32;
            RopeScaling::Linear { factor }
        }
        Some(other) => {
            return Err(Error::model_file(&gguf.path, format!("has {arch}.rope.scaling.type {other:?}, which attnmap does not support (supported: none, linear)")));
        }
    };
    let tokens = gguf.array("tokenizer.ggml.tokens")?.len();
    let vocab_size = gguf.optional_count(&key("vocab_size"))?.unwrap_or(tokens);
    let config = Config {
        family: Family::Llama,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: gguf.count(&key("feed_forward_length"))?,
        layers,
        heads,
        kv_heads,
        head_dim,
        hidden_act: Activation::Silu,
        max_positions: gguf.count(&key("context_length"))?,
        rms_norm_eps: gguf.number(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: gguf.optional_number(&key("rope.freq_base"))?.unwrap_or(10000.0),
        rope_scaling,
        qkv_bias: gguf.has_tensor("blk.0.attn_q.bias"),
        o_bias: gguf.has_tensor("blk.0.attn_output.bias"),
        mlp_bias: gguf.has_tensor("blk.0.ffn_up.bias"),
        sliding_window: vec![None; layers],
    };
    config.check().map_err(|message| Error::model_file(&gguf.path, message))?;
    Ok(config)
}

/// A tensor to read: its GGUF name, its Hugging Face name, and how llama.cpp permuted its rows.
struct Wanted {
    gguf: String,
    hf: String,
    /// `Some(heads)` for q and k: rows were interleaved per head.
    permuted_heads: Option<usize>,
    /// A projection weight that `--quantized` keeps quantized.
    matmul: bool,
}

fn wanted(config: &Config) -> Vec<Wanted> {
    let plain = |gguf: &str, hf: &str| Wanted { gguf: gguf.into(), hf: hf.into(), permuted_heads: None, matmul: false };
    let mut list = vec![plain("token_embd.weight", "embed_tokens.weight"), plain("output_norm.weight", "norm.weight")];
    for layer in 0..config.layers {
        let blk = |name: &str| format!("blk.{layer}.{name}");
        let hf = |name: &str| format!("layers.{layer}.{name}");
        list.push(plain(&blk("attn_norm.weight"), &hf("input_layernorm.weight")));
        list.push(plain(&blk("ffn_norm.weight"), &hf("post_attention_layernorm.weight")));
        let projections = [
            ("attn_q", "self_attn.q_proj", Some(config.heads), config.qkv_bias),
            ("attn_k", "self_attn.k_proj", Some(config.kv_heads), config.qkv_bias),
            ("attn_v", "self_attn.v_proj", None, config.qkv_bias),
            ("attn_output", "self_attn.o_proj", None, config.o_bias),
            ("ffn_gate", "mlp.gate_proj", None, config.mlp_bias),
            ("ffn_up", "mlp.up_proj", None, config.mlp_bias),
            ("ffn_down", "mlp.down_proj", None, config.mlp_bias),
        ];
        for (gguf_name, hf_name, permuted_heads, bias) in projections {
            list.push(Wanted { gguf: blk(&format!("{gguf_name}.weight")), hf: hf(&format!("{hf_name}.weight")), permuted_heads, matmul: true });
            if bias {
                list.push(Wanted { gguf: blk(&format!("{gguf_name}.bias")), hf: hf(&format!("{hf_name}.bias")), permuted_heads, matmul: false });
            }
        }
    }
    list
}

/// Find every tensor the model needs. Matrices (the projection weights and the
/// token embedding) stay in the mapped file's blocks, decoded to f32 when a
/// layer runs (the embedding row by row), so the f32 copy of the whole model
/// never exists; with `quantized`, the quantized projections are copied out for
/// candle's quantized matmuls instead. The norms and biases (small) are decoded here.
fn read_tensors(gguf: &GgufFile, config: &Config, quantized: bool) -> Result<GgufTensors> {
    let mut tensors = GgufTensors::default();
    let bad = |name: &str, e: candle_core::Error| Error::model_file(&gguf.path, format!("tensor {name} cannot be decoded ({})", first_line(&e)));
    for want in wanted(config) {
        if !want.matmul && want.hf != "embed_tokens.weight" {
            let values = gguf.dense(&want.gguf)?;
            let values = match want.permuted_heads {
                Some(heads) => unpermute(&values, heads).map_err(|e| bad(&want.gguf, e))?,
                None => values,
            };
            tensors.dense.insert(want.hf, values);
            continue;
        }
        let blocks = gguf.blocks(&want.gguf)?;
        let blocks = match want.permuted_heads {
            Some(heads) => blocks.unpermuted(heads).map_err(|e| bad(&want.gguf, e))?,
            None => blocks,
        };
        let float = matches!(blocks.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if quantized && want.matmul && !float {
            tensors.quantized.insert(want.hf, blocks.to_qtensor().map_err(|e| bad(&want.gguf, e))?);
        } else {
            tensors.blocks.insert(want.hf, blocks);
        }
    }
    Ok(tensors)
}

/// A GGUF model's tensors by Hugging Face name, as [`Tensors`] takes them.
#[derive(Default)]
struct GgufTensors {
    dense: HashMap<String, Tensor>,
    quantized: HashMap<String, QTensor>,
    blocks: HashMap<String, Blocks>,
}

/// llama.cpp's `permute` undone on rows: within each head, GGUF row `2i + j`
/// holds HF row `j * d/2 + i` (reshape `[heads, d/2, 2, ..]`, swap axes 1 and 2).
fn unpermute(values: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = values.dims().to_vec();
    let Some(&rows) = dims.first() else { candle_core::bail!("is a scalar, not rows of a projection") };
    if heads == 0 || rows % (2 * heads) != 0 {
        candle_core::bail!("has {rows} rows, not a whole number of {heads} heads with even head_dim");
    }
    let half = rows / heads / 2;
    let rest: usize = dims[1..].iter().product();
    values.reshape((heads, half, 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's LlamaModel.permute, for the round trip.
    fn permute(values: &Tensor, heads: usize) -> Tensor {
        let dims = values.dims().to_vec();
        let rest: usize = dims[1..].iter().product();
        values.reshape((heads, 2, dims[0] / heads / 2, rest)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape(dims).unwrap()
    }

    #[test]
    fn unpermute_undoes_llama_cpp_permute() {
        let hf = Tensor::arange(0f32, 8.0 * 64.0, &Device::Cpu).unwrap().reshape((8, 64)).unwrap();
        let stored = permute(&hf, 2);
        assert_ne!(stored.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
        assert_eq!(unpermute(&stored, 2).unwrap().to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
        let bias = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap();
        assert_eq!(unpermute(&permute(&bias, 2), 2).unwrap().to_vec1::<f32>().unwrap(), bias.to_vec1::<f32>().unwrap());
    }
}
