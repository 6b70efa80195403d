//! A GGUF matrix as it lies in the memory-mapped file: quantized blocks that
//! are dequantized to f32 when a layer runs, on every core, straight from the
//! page cache (no copy of the file is read into memory first).
//!
//! Dequantizing goes through candle's own block decoders (`GgmlType::to_float`,
//! the arithmetic of `QTensor::dequantize`), one row at a time: blocks run along
//! rows, so a row decodes alone to exactly what the whole tensor would give, and
//! the values are the same on any number of threads. Q4_1 (SmolLM2's GGUF)
//! has a vectorised copy of candle's decoder here, equal to it bit for bit.

use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType,
};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use memmap2::Mmap;
use rayon::prelude::*;

use super::kernels::f32_slice;
use crate::error::Result;

/// The bytes a [`Blocks`] reads: a window of the mapped file, or (if the file
/// places a tensor where its blocks would be misaligned) a copy.
#[derive(Clone)]
enum Bytes {
    Mapped { map: Arc<Mmap>, start: usize, len: usize },
    /// u64 words, so every block type is aligned; `len` bytes of them are the tensor.
    Copied { words: Arc<Vec<u64>>, len: usize },
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
            // SAFETY: the words hold at least `len` initialised bytes, and u8 has no alignment.
            Bytes::Copied { words, len } => unsafe { std::slice::from_raw_parts(words.as_ptr() as *const u8, *len) },
        }
    }
}

/// A `[rows, columns]` matrix of GGML blocks, dequantized on demand.
#[derive(Clone)]
pub(crate) struct Blocks {
    bytes: Bytes,
    dtype: GgmlDType,
    rows: usize,
    columns: usize,
    /// `Some(heads)`: llama.cpp interleaved the rows of each head for its RoPE
    /// (q and k); they are put back in Hugging Face order as they are decoded.
    permuted_heads: Option<usize>,
}

impl Blocks {
    /// `len` bytes at `start` of `map`, holding a `[rows, columns]` matrix of `dtype`
    /// blocks. The caller has checked that the bytes lie inside the file.
    pub fn new(map: &Arc<Mmap>, start: usize, dtype: GgmlDType, rows: usize, columns: usize) -> candle_core::Result<Self> {
        if dtype.block_size() == 0 || columns % dtype.block_size() != 0 {
            candle_core::bail!("has rows of {columns} values, not a whole number of {dtype:?} blocks of {}", dtype.block_size());
        }
        let len = rows * (columns / dtype.block_size()) * dtype.type_size();
        let bytes = if (map.as_ptr() as usize + start) % align_of(dtype) == 0 {
            Bytes::Mapped { map: map.clone(), start, len }
        } else {
            let mut words = vec![0u64; len.div_ceil(8)];
            // SAFETY: `words` holds at least `len` bytes; the regions are distinct allocations.
            unsafe { std::ptr::copy_nonoverlapping(map[start..start + len].as_ptr(), words.as_mut_ptr() as *mut u8, len) };
            Bytes::Copied { words: Arc::new(words), len }
        };
        Ok(Self { bytes, dtype, rows, columns, permuted_heads: None })
    }

    /// Undo llama.cpp's per-head row interleave of q and k (`heads` heads) while decoding:
    /// within each head, stored row `2i + j` is Hugging Face row `j * d/2 + i`.
    pub fn unpermuted(mut self, heads: usize) -> candle_core::Result<Self> {
        if heads == 0 || self.rows % (2 * heads) != 0 {
            candle_core::bail!("has {} rows, not a whole number of {heads} heads with even head_dim", self.rows);
        }
        self.permuted_heads = Some(heads);
        Ok(self)
    }

    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.columns]
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    fn row_bytes(&self) -> usize {
        self.columns / self.dtype.block_size() * self.dtype.type_size()
    }

    /// The stored row that holds (Hugging Face) row `row`.
    fn stored_row(&self, row: usize) -> usize {
        match self.permuted_heads {
            None => row,
            Some(heads) => {
                let head_dim = self.rows / heads;
                let half = head_dim / 2;
                let (head, within) = (row / head_dim, row % head_dim);
                let (j, i) = (within / half, within % half);
                head * head_dim + 2 * i + j
            }
        }
    }

    /// The whole matrix in f32, `[rows, columns]`.
    pub fn dequantize(&self) -> candle_core::Result<Tensor> {
        let mut values = vec![0f32; self.rows * self.columns];
        self.decode_into(&mut values);
        Tensor::from_vec(values, (self.rows, self.columns), &Device::Cpu)
    }

    /// Decode the whole matrix into `values` (`rows * columns` long), in parallel by rows.
    fn decode_into(&self, values: &mut [f32]) {
        let data = self.bytes.as_slice();
        let row_bytes = self.row_bytes();
        let decode = decoder(self.dtype);
        // About 64k values per task: enough to amortise the hand-off, small enough to balance.
        let min_rows = (65536 / self.columns.max(1)).max(1);
        values.par_chunks_mut(self.columns).enumerate().with_min_len(min_rows).for_each(|(row, out)| {
            let from = self.stored_row(row) * row_bytes;
            decode(&data[from..from + row_bytes], out);
        });
    }

    /// `x W^T + bias` for `x` `[tokens, columns]`: candle's `Linear::forward` on the
    /// decoded weight, bit for bit. The weight is decoded into a buffer this thread
    /// keeps between calls, and multiplied by the same gemm call candle's CPU matmul
    /// makes (same kernel, strides and threading), so no f32 copy of the matrix is
    /// allocated, faulted in and returned to the system for every projection.
    pub fn linear(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (tokens, width) = x.dims2()?;
        if width != self.columns {
            return Err(candle_core::Error::Msg(format!("a [{tokens}, {width}] input to a [{}, {}] weight", self.rows, self.columns)).into());
        }
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let input = f32_slice(&storage, layout)?;
        let mut out = vec![0f32; tokens * self.rows];
        let mut multiply = |weight: &mut Vec<f32>| {
            weight.resize(self.rows * self.columns, 0.0);
            self.decode_into(weight);
            matmul_transposed(input, weight, &mut out, tokens, self.rows, self.columns);
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut weight) => multiply(&mut weight),
            // Re-entered on this thread (a rayon task of another forward pass): a buffer of its own.
            Err(_) => multiply(&mut Vec::new()),
        });
        drop(storage);
        if let Some(bias) = bias {
            // candle's broadcast_add: one f32 addition per value.
            let bias = bias.to_vec1::<f32>()?;
            for row in out.chunks_mut(self.rows) {
                for (value, &b) in row.iter_mut().zip(&bias) {
                    *value += b;
                }
            }
        }
        Ok(Tensor::from_vec(out, (tokens, self.rows), &Device::Cpu)?)
    }

    /// The rows `ids` in f32, `[ids.len(), columns]` (an embedding lookup that decodes
    /// only the rows asked for). Every id must be below `rows`.
    pub fn rows(&self, ids: &[usize]) -> candle_core::Result<Tensor> {
        let data = self.bytes.as_slice();
        let row_bytes = self.row_bytes();
        let decode = decoder(self.dtype);
        let mut values = vec![0f32; ids.len() * self.columns];
        for (out, &id) in values.chunks_mut(self.columns).zip(ids) {
            if id >= self.rows {
                candle_core::bail!("row {id} is outside a matrix of {} rows", self.rows);
            }
            let from = self.stored_row(id) * row_bytes;
            decode(&data[from..from + row_bytes], out);
        }
        Tensor::from_vec(values, (ids.len(), self.columns), &Device::Cpu)
    }

    /// A candle `QTensor` of the same blocks in Hugging Face row order (a copy), for
    /// `--quantized`'s quantized matmuls: whole rows of bytes move, nothing is requantized.
    pub fn to_qtensor(&self) -> candle_core::Result<QTensor> {
        let data = self.bytes.as_slice();
        let row_bytes = self.row_bytes();
        let mut out = Vec::with_capacity(data.len());
        for row in 0..self.rows {
            let from = self.stored_row(row) * row_bytes;
            out.extend_from_slice(&data[from..from + row_bytes]);
        }
        qtensor_from_ggml(self.dtype, &out, vec![self.rows, self.columns], &Device::Cpu)
    }
}

thread_local! {
    /// The decoded weight of the projection running on this thread, reused by the next.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out = lhs rhs^T` for row-major `lhs` `[m, k]` and `rhs` `[n, k]`: the call candle
/// 0.11's CPU `MatMul` makes for `x.matmul(&w.t())` (gemm 0.19, the version candle
/// pins; `read_dst` off, alpha 0, beta 1, rayon on candle's thread count).
fn matmul_transposed(lhs: &[f32], rhs: &[f32], out: &mut [f32], m: usize, n: usize, k: usize) {
    assert!(lhs.len() == m * k && rhs.len() == n * k && out.len() == m * n, "matmul shapes");
    // candle asks for every matmul, and without RAYON_NUM_THREADS that parses /proc/cpuinfo.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(candle_core::utils::get_num_threads);
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the three slices hold exactly the [m, k], [k, n] (transposed view) and [m, n]
    // elements the strides address, checked above; `out` is not aliased.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            0f32,
            1f32,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The alignment of a `dtype` block in memory.
fn align_of(dtype: GgmlDType) -> usize {
    match dtype {
        GgmlDType::F32 => std::mem::align_of::<f32>(),
        GgmlDType::F16 | GgmlDType::BF16 => 2,
        GgmlDType::Q4_0 => std::mem::align_of::<BlockQ4_0>(),
        GgmlDType::Q4_1 => std::mem::align_of::<BlockQ4_1>(),
        GgmlDType::Q5_0 => std::mem::align_of::<BlockQ5_0>(),
        GgmlDType::Q5_1 => std::mem::align_of::<BlockQ5_1>(),
        GgmlDType::Q8_0 => std::mem::align_of::<BlockQ8_0>(),
        GgmlDType::Q8_1 => std::mem::align_of::<BlockQ8_1>(),
        GgmlDType::Q2K => std::mem::align_of::<BlockQ2K>(),
        GgmlDType::Q3K => std::mem::align_of::<BlockQ3K>(),
        GgmlDType::Q4K => std::mem::align_of::<BlockQ4K>(),
        GgmlDType::Q5K => std::mem::align_of::<BlockQ5K>(),
        GgmlDType::Q6K => std::mem::align_of::<BlockQ6K>(),
        GgmlDType::Q8K => std::mem::align_of::<BlockQ8K>(),
    }
}

/// Decodes one row's bytes into its f32 values.
type Decoder = fn(&[u8], &mut [f32]);

fn decoder(dtype: GgmlDType) -> Decoder {
    match dtype {
        GgmlDType::F32 => |bytes, out| {
            for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        },
        GgmlDType::F16 => |bytes, out| {
            for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *value = half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f32();
            }
        },
        GgmlDType::BF16 => |bytes, out| {
            for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *value = half::bf16::from_le_bytes([chunk[0], chunk[1]]).to_f32();
            }
        },
        GgmlDType::Q4_0 => candle_decode::<BlockQ4_0>,
        GgmlDType::Q4_1 => decode_q4_1,
        GgmlDType::Q5_0 => candle_decode::<BlockQ5_0>,
        GgmlDType::Q5_1 => candle_decode::<BlockQ5_1>,
        GgmlDType::Q8_0 => candle_decode::<BlockQ8_0>,
        GgmlDType::Q8_1 => candle_decode::<BlockQ8_1>,
        GgmlDType::Q2K => candle_decode::<BlockQ2K>,
        GgmlDType::Q3K => candle_decode::<BlockQ3K>,
        GgmlDType::Q4K => candle_decode::<BlockQ4K>,
        GgmlDType::Q5K => candle_decode::<BlockQ5K>,
        GgmlDType::Q6K => candle_decode::<BlockQ6K>,
        GgmlDType::Q8K => candle_decode::<BlockQ8K>,
    }
}

/// Q4_1 blocks (an f16 scale `d`, an f16 minimum `m`, 32 four-bit values; low
/// nibbles first): candle's `BlockQ4_1::to_float` operation for operation,
/// `q * d + m` with the f16s widened by the same `half` call, written so the
/// compiler vectorises it (candle's loop indexes with bounds checks, one value
/// at a time). A multiply then an add, never fused: Rust does not contract them.
fn decode_q4_1(bytes: &[u8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { decode_q4_1_avx2(bytes, out) };
    }
    decode_q4_1_generic(bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decode_q4_1_avx2(bytes: &[u8], out: &mut [f32]) {
    decode_q4_1_generic(bytes, out)
}

#[inline(always)]
fn decode_q4_1_generic(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len() / 20 * 32, out.len(), "partial Q4_1 row");
    for (block, out) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
        let qs: &[u8; 16] = block[4..20].try_into().expect("20-byte block");
        let (low, high) = out.split_at_mut(16);
        for ((l, h), &q) in low.iter_mut().zip(high.iter_mut()).zip(qs) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}

/// candle's decoder for block type `T`, on bytes that hold whole, aligned `T` blocks.
fn candle_decode<T: GgmlType>(bytes: &[u8], out: &mut [f32]) {
    let count = bytes.len() / std::mem::size_of::<T>();
    assert!(bytes.as_ptr() as usize % std::mem::align_of::<T>() == 0 && count * T::BLCK_SIZE == out.len(), "misaligned or partial GGML row");
    // SAFETY: aligned (checked above; `Blocks::new` copies misaligned tensors), `count` whole
    // blocks lie in `bytes`, and the block types are plain bytes and f16s with no invalid values.
    let blocks = unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, count) };
    T::to_float(blocks, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapMut;

    /// `bytes` in an anonymous map, from `offset` on (to place blocks off their alignment).
    fn mapped(bytes: &[u8], offset: usize) -> Arc<Mmap> {
        let mut map = MmapMut::map_anon(offset + bytes.len()).unwrap();
        map[offset..].copy_from_slice(bytes);
        Arc::new(map.make_read_only().unwrap())
    }

    fn matrix(rows: usize, columns: usize) -> Tensor {
        Tensor::randn(0f32, 1.0, (rows, columns), &Device::Cpu).unwrap()
    }

    /// llama.cpp's LlamaModel.permute, for the round trip.
    fn permute(values: &Tensor, heads: usize) -> Tensor {
        let (rows, columns) = values.dims2().unwrap();
        values.reshape((heads, 2, rows / heads / 2, columns)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((rows, columns)).unwrap()
    }

    fn values(tensor: &Tensor) -> Vec<f32> {
        tensor.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Decoding from the map, in parallel by rows and on any number of threads, gives
    /// candle's `QTensor::dequantize` bit for bit, aligned or copied.
    #[test]
    fn dequantize_equals_candle_bit_for_bit() {
        let source = matrix(48, 512);
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::F16, GgmlDType::F32] {
            let quantized = QTensor::quantize(&source, dtype).unwrap();
            let expected = values(&quantized.dequantize(&Device::Cpu).unwrap());
            let bytes = quantized.data().unwrap();
            for offset in [0, 1] {
                let map = mapped(&bytes, offset);
                let blocks = Blocks::new(&map, offset, dtype, 48, 512).unwrap();
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let decoded = pool.install(|| values(&blocks.dequantize().unwrap()));
                    assert!(decoded == expected, "{dtype:?}, offset {offset}, {threads} threads");
                }
                let rows = values(&blocks.rows(&[5, 0, 47, 5]).unwrap());
                let expected_rows: Vec<f32> = [5, 0, 47, 5].iter().flat_map(|&r| expected[r * 512..(r + 1) * 512].to_vec()).collect();
                assert!(rows == expected_rows, "{dtype:?}, offset {offset}: rows");
            }
        }
    }

    /// The vectorised Q4_1 decoder against candle's on arbitrary bytes: every nibble, and
    /// scales that are subnormal, huge, infinite or NaN, compared as bit patterns (a NaN
    /// only as NaN: which operand's payload `NaN * q + NaN` keeps is the compiler's choice).
    #[test]
    fn q4_1_decoder_equals_candle_on_any_bytes() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: Vec<u8> = (0..20 * 4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut ours = vec![0f32; 32 * 4096];
        decode_q4_1(&bytes, &mut ours);
        let mut theirs = vec![0f32; 32 * 4096];
        candle_decode::<BlockQ4_1>(&mapped(&bytes, 0)[..], &mut theirs);
        let same = |(a, b): (&f32, &f32)| a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan();
        assert!(ours.iter().zip(&theirs).all(same));
        assert!(ours.iter().filter(|v| v.is_finite()).count() > 28 * 4096, "the bytes must mostly make finite values");
    }

    /// q and k come back in Hugging Face order, decoded or copied out for quantized matmuls.
    #[test]
    fn unpermuted_rows_undo_llama_cpp_permute() {
        let hf = matrix(16, 64);
        let stored = QTensor::quantize(&permute(&hf, 2), GgmlDType::Q8_0).unwrap();
        let direct = values(&QTensor::quantize(&hf, GgmlDType::Q8_0).unwrap().dequantize(&Device::Cpu).unwrap());
        let map = mapped(&stored.data().unwrap(), 0);
        let blocks = Blocks::new(&map, 0, GgmlDType::Q8_0, 16, 64).unwrap().unpermuted(2).unwrap();
        assert!(values(&blocks.dequantize().unwrap()) == direct);
        assert!(values(&blocks.to_qtensor().unwrap().dequantize(&Device::Cpu).unwrap()) == direct);
        assert!(values(&blocks.rows(&[3]).unwrap()) == direct[3 * 64..4 * 64]);
        assert!(Blocks::new(&map, 0, GgmlDType::Q8_0, 16, 64).unwrap().unpermuted(3).is_err(), "16 rows are not 3 heads");
    }
}
