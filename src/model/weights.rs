//! Reading weight files into candle tensors, with errors that name the file.
//!
//! safetensors are read tensor by tensor with positioned reads straight into
//! f32 buffers instead of being memory-mapped and copied: peak memory stays
//! at one copy of the weights, which is what keeps `show` light.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::source::Weights;

/// A VarBuilder over every float tensor of the weight files, converted to f32,
/// and the tensor names (to compare the file with its config).
pub fn var_builder(weights: &Weights) -> Result<(VarBuilder<'static>, Vec<String>)> {
    let device = Device::Cpu;
    let tensors = match weights {
        Weights::Safetensors(paths) => {
            let mut tensors = HashMap::new();
            for path in paths {
                read_safetensors(path, &mut tensors)?;
            }
            tensors
        }
        Weights::PytorchBin(path) => read_pth(path)?,
        // GGUF metadata decides the names and layout; model/gguf.rs reads it.
        Weights::Gguf(path) => return Err(Error::model_file(path, "is a GGUF file, which is read by the GGUF loader, not as named tensors")),
    };
    let names = tensors.keys().cloned().collect();
    Ok((VarBuilder::from_tensors(tensors, DType::F32, &device), names))
}

/// How many layers the tensor names hold (`encoder.layer.5.…`, `h.5.…`, `model.layers.5.…`,
/// `blk.5.…`): one more than the largest layer index, or 0 if no name has one.
pub fn layers_in<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    let mut count = 0;
    for name in names {
        let parts: Vec<&str> = name.split('.').collect();
        for pair in parts.windows(2) {
            if matches!(pair[0], "layer" | "layers" | "h" | "blk") {
                if let Ok(index) = pair[1].parse::<usize>() {
                    count = count.max(index.saturating_add(1));
                }
            }
        }
    }
    count
}

fn read_safetensors(path: &Path, into: &mut HashMap<String, Tensor>) -> Result<()> {
    let corrupt = |message: String| {
        Error::model_file(path, format!("is not a valid safetensors file: {message}; download it again or re-save it with safetensors"))
    };
    let file = File::open(path).map_err(|e| Error::model_file(path, format!("cannot be opened: {e}")))?;
    let file_len = file.metadata().map_err(|e| Error::model_file(path, e))?.len();
    let mut prefix = [0u8; 8];
    read_at(&file, &mut prefix, 0).map_err(|e| corrupt(format!("cannot read the header length ({e})")))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(corrupt(format!("header length {header_len} does not fit in a {file_len}-byte file")));
    }
    let mut header = vec![0u8; header_len as usize];
    read_at(&file, &mut header, 8).map_err(|e| corrupt(format!("cannot read the header ({e})")))?;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("the header is not JSON ({e})")))?;
    let data_start = 8 + header_len;
    // The whole header is checked before anything is allocated: every count is
    // checked arithmetic, every tensor lies inside the file and no two overlap,
    // so the reads below allocate at most the file's own size.
    let mut planned = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| corrupt(format!("tensor {name} has no dtype")))?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|dims| dims.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| corrupt(format!("tensor {name} has no valid shape")))?;
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|o| o.iter().map(|v| v.as_u64()).collect())
            .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| corrupt(format!("tensor {name} has no valid data_offsets")))?;
        let (start, end) = match (data_start.checked_add(offsets[0]), data_start.checked_add(offsets[1])) {
            (Some(start), Some(end)) if end <= file_len => (start, end),
            _ => {
                return Err(corrupt(format!(
                    "tensor {name} ends at byte {} but the file has {file_len} bytes (truncated download?)",
                    data_start as u128 + offsets[1] as u128
                )))
            }
        };
        let Some(element_size) = element_size(dtype) else {
            return Err(corrupt(format!("tensor {name} has an unknown dtype {dtype:?}")));
        };
        let byte_len = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|numel| numel.checked_mul(element_size))
            .filter(|&bytes| bytes as u64 == end - start)
            .ok_or_else(|| corrupt(format!("tensor {name} has {} bytes, which its shape {shape:?} of {dtype} does not take", end - start)))?;
        planned.push((start, byte_len, name, dtype.to_string(), shape));
    }
    planned.sort_by_key(|p| p.0);
    for pair in planned.windows(2) {
        if pair[0].0 + pair[0].1 as u64 > pair[1].0 {
            return Err(corrupt(format!("tensors {} and {} overlap", pair[0].2, pair[1].2)));
        }
    }
    for (start, byte_len, name, dtype, shape) in planned {
        let dtype = match dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            // Integer buffers (e.g. position_ids) are not weights.
            _ => continue,
        };
        let numel = byte_len / dtype.size_in_bytes();
        let tensor = if dtype == DType::F32 {
            let mut values = vec![0f32; numel];
            // SAFETY: any bit pattern is a valid f32, the slice covers exactly
            // the vector's initialised memory, and safetensors is little-endian
            // like every platform candle's CPU backend runs on.
            let bytes = unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), byte_len) };
            read_at(&file, bytes, start).map_err(|e| corrupt(format!("cannot read tensor {name} ({e})")))?;
            if cfg!(target_endian = "big") {
                for v in values.iter_mut() {
                    *v = f32::from_bits(v.to_bits().swap_bytes());
                }
            }
            Tensor::from_vec(values, shape, &Device::Cpu)?
        } else {
            let mut bytes = vec![0u8; byte_len];
            read_at(&file, &mut bytes, start).map_err(|e| corrupt(format!("cannot read tensor {name} ({e})")))?;
            Tensor::from_raw_buffer(&bytes, dtype, &shape, &Device::Cpu)?.to_dtype(DType::F32)?
        };
        into.insert(name, tensor);
    }
    Ok(())
}

/// A pytorch_model.bin read as data: the pickle's tensor list is checked against
/// the archive (shapes by checked arithmetic, every tensor inside its storage
/// record) before candle reads a tensor, since candle allocates what the pickle says.
fn read_pth(path: &Path) -> Result<HashMap<String, Tensor>> {
    let unreadable = |why: String| Error::model_file(path, format!("cannot be read as PyTorch weights ({why}); re-save the model as model.safetensors"));
    let infos = crate::error::contain_panics(|| candle_core::pickle::read_pth_tensor_info(path, false, None))
        .ok_or_else(|| unreadable("its pickle is malformed".into()))?
        .map_err(|e| unreadable(crate::error::first_line(&e)))?;
    let file = File::open(path).map_err(|e| Error::model_file(path, format!("cannot be opened: {e}")))?;
    let file_len = file.metadata().map_err(|e| Error::model_file(path, e))?.len();
    let mut archive = zip::ZipArchive::new(file).map_err(|e| unreadable(e.to_string()))?;
    for info in &infos {
        let record = archive.by_name(&info.path).map_err(|e| unreadable(format!("tensor {} names a missing record {} ({e})", info.name, info.path)))?;
        let needed = info
            .layout
            .dims()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|numel| numel.checked_add(info.layout.start_offset()))
            .and_then(|elements| elements.checked_mul(info.dtype.size_in_bytes()));
        // PyTorch stores records uncompressed, so a record is never larger than the file.
        if needed.is_none_or(|bytes| bytes as u64 > record.size() || record.size() > file_len) {
            return Err(unreadable(format!("tensor {} of shape {:?} does not fit in its {}-byte record", info.name, info.layout.dims(), record.size())));
        }
    }
    let tensors = candle_core::pickle::PthTensors::new(path, None).map_err(|e| unreadable(crate::error::first_line(&e)))?;
    let mut out = HashMap::new();
    for info in &infos {
        let tensor = crate::error::contain_panics(|| tensors.get(&info.name))
            .ok_or_else(|| unreadable(format!("tensor {} is malformed", info.name)))?
            .map_err(|e| unreadable(format!("tensor {}: {}", info.name, crate::error::first_line(&e))))?;
        if let Some(tensor) = tensor {
            let tensor = if tensor.dtype().is_float() { tensor.to_dtype(DType::F32)? } else { tensor };
            out.insert(info.name.clone(), tensor);
        }
    }
    Ok(out)
}

/// Bytes per element of a safetensors dtype (the format's own list), or None for an unknown one.
fn element_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
