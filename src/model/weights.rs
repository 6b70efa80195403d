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

/// A VarBuilder over every float tensor of the weight files, converted to f32.
pub fn var_builder(weights: &Weights) -> Result<VarBuilder<'static>> {
    let device = Device::Cpu;
    match weights {
        Weights::Safetensors(paths) => {
            let mut tensors = HashMap::new();
            for path in paths {
                read_safetensors(path, &mut tensors)?;
            }
            Ok(VarBuilder::from_tensors(tensors, DType::F32, &device))
        }
        Weights::PytorchBin(path) => VarBuilder::from_pth(path, DType::F32, &device)
            .map_err(|e| {
                Error::model_file(path, format!("cannot be read as PyTorch weights ({}); re-save the model as model.safetensors", crate::error::first_line(&e)))
            }),
        // GGUF metadata decides the names and layout; model/gguf.rs reads it.
        Weights::Gguf(path) => Err(Error::model_file(path, "is a GGUF file, which is read by the GGUF loader, not as named tensors")),
    }
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
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| corrupt(format!("tensor {name} has no dtype")))?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| corrupt(format!("tensor {name} has no valid shape")))?;
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|o| o.iter().map(|v| v.as_u64()).collect())
            .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1])
            .ok_or_else(|| corrupt(format!("tensor {name} has no valid data_offsets")))?;
        let (start, end) = (data_start + offsets[0], data_start + offsets[1]);
        if end > file_len {
            return Err(corrupt(format!("tensor {name} ends at byte {end} but the file has {file_len} bytes (truncated download?)")));
        }
        let numel: usize = shape.iter().product();
        let dtype = match dtype {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "F64" => DType::F64,
            // Integer buffers (e.g. position_ids) are not weights.
            _ => continue,
        };
        let byte_len = numel * dtype.size_in_bytes();
        if (end - start) as usize != byte_len {
            return Err(corrupt(format!("tensor {name} has {} bytes but its shape {shape:?} needs {byte_len}", end - start)));
        }
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
