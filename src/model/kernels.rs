//! The elementwise and row-wise ops that dominate a CPU forward pass after the
//! matmuls: the fused scale + mask + softmax over attention scores, and exact
//! (erf) GELU. candle's versions are scalar (its GELU evaluates erf in f64 one
//! value at a time) and `softmax_last_dim` runs on one thread; PyTorch's are
//! vectorised and parallel, which is most of the gap measured in issue 10.
//!
//! Both are written as plain loops over contiguous rows with no branches in
//! the inner loop, so the compiler vectorises them; an AVX-512 or AVX2 copy is
//! chosen at run time (AVX-512 halves GELU's time on Zen 4). No fused
//! multiply-add is used (Rust never contracts `a * b + c`), so the AVX-512,
//! AVX2 and SSE2 copies round identically and every result is the same on
//! every x86-64 CPU, on any number of threads: rows are split across rayon's
//! threads, but each row is computed by one thread in a fixed order.
//!
//! What they mirror: PyTorch's `_vec_softmax_lastdim`
//! (aten/src/ATen/native/cpu/SoftMaxKernel.cpp: max, exp(x - max), sum,
//! multiply by 1 / sum) with transformers' `eager_attention_forward` arithmetic before it
//! (scores * scaling + mask); and `GELUActivation` = `x * 0.5 * (1 + erf(x /
//! sqrt 2))` (activations.py, what BERT's "gelu" means).

use candle_core::{CpuStorage, Device, Layout, Shape, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::matmul;
use crate::error::Result;

/// Which keys a query may see: everything, or (decoders) keys up to the query,
/// within a sliding window of `w` positions when there is one
/// (masking_utils.sliding_window_overlay: keep `key > query - w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    None,
    Causal { window: Option<usize> },
}

impl Mask {
    /// The visible keys of `query`, as a half-open range of key positions.
    pub fn visible(self, query: usize, keys: usize) -> std::ops::Range<usize> {
        match self {
            Mask::None => 0..keys,
            Mask::Causal { window } => {
                let end = (query + 1).min(keys);
                let start = window.map_or(0, |w| (query + 1).saturating_sub(w));
                start.min(end)..end
            }
        }
    }
}

/// softmax(scores * scale + mask) over the last axis of `scores` (`[heads, rows, keys]`),
/// where row `r` is query `first_query + r`. Masked keys are exactly 0, as with an additive
/// -inf mask. A row that sees no key at all is NaN (as PyTorch's softmax of all -inf), so
/// the capture's finiteness check reports it.
pub fn masked_softmax(scores: &Tensor, scale: f64, mask: Mask, first_query: usize) -> Result<Tensor> {
    let (heads, rows, keys) = scores.dims3()?;
    let scores = scores.contiguous()?;
    let (storage, layout) = scores.storage_and_layout();
    let mut out = f32_slice(&storage, layout)?.to_vec();
    drop(storage);
    // transformers multiplies the f32 scores by the Python float `scaling`, which PyTorch rounds to f32.
    let scale = scale as f32;
    out.par_chunks_mut(keys).enumerate().with_min_len(chunk_rows(keys)).for_each(|(index, row)| softmax_in_place(row, scale, mask, first_query + index % rows));
    Ok(Tensor::from_vec(out, (heads, rows, keys), &Device::Cpu)?)
}

/// One row of [`masked_softmax`], in place: `row` holds query `query`'s raw scores.
fn softmax_in_place(row: &mut [f32], scale: f32, mask: Mask, query: usize) {
    let visible = mask.visible(query, row.len());
    if visible.is_empty() {
        row.fill(f32::NAN);
        return;
    }
    row[..visible.start].fill(0.0);
    row[visible.end..].fill(0.0);
    softmax_row(&mut row[visible], scale);
}

/// Query rows per attention task: a fixed count (not one derived from the thread count),
/// so every row is computed by the same calls whatever the pool size. 128 rows of 512 keys
/// (256 KiB of scores) stay in L2 between the score product, the softmax and P V; on MiniLM
/// at 512 tokens one layer's attention took 10.5 / 8.0 / 7.3 / 9.0 ms with 32 / 64 / 128 / 256.
const ATTENTION_ROWS: usize = 128;

/// Attention of the queries `first_query..first_query + rows` of `q` (`[heads, seq, d]`)
/// over every key: writes softmax(q k^T * scale + mask) into `pattern` (`[heads, rows,
/// keys]`) and P v into those queries' rows of `z` (`[seq, heads, d]`, the merged layout
/// the output projection reads). `k_t` is the keys transposed, `[kv_heads, d, keys]`, and
/// `v` is `[kv_heads, keys, d]`; query head h reads KV head h / (heads / kv_heads), as
/// transformers' repeat_kv.
///
/// Strided views (a head split, a transpose) are read in place: the products are given the
/// strides instead of a contiguous copy ([`product`]). Only `k_t` should be contiguous, so
/// that its rows are. The work is split into (head, 128 query rows) tasks across rayon's
/// threads; each task's scores are normalised and multiplied by V while they are still in
/// cache. Each task is a fixed set of single-threaded products, so the result does not
/// depend on the number of threads.
#[allow(clippy::too_many_arguments)]
pub fn attention_block(q: &Tensor, k_t: &Tensor, v: &Tensor, scale: f64, mask: Mask, first_query: usize, rows: usize, pattern: &mut [f32], z: &mut [f32]) -> Result<()> {
    let (heads, seq, d) = q.dims3()?;
    let (kv_heads, keys, _) = v.dims3()?;
    if k_t.dims3()? != (kv_heads, d, keys) || v.dim(2)? != d || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(candle_core::Error::Msg(format!("attention shapes do not fit: q {:?}, k^T {:?}, v {:?}", q.dims(), k_t.dims(), v.dims())).into());
    }
    if first_query + rows > seq || pattern.len() != heads * rows * keys || z.len() != seq * heads * d {
        return Err(candle_core::Error::Msg("attention buffers do not fit the block".into()).into());
    }
    if heads * rows * keys * d == 0 {
        return Ok(());
    }
    let group = heads / kv_heads;
    let scale = scale as f32;
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k_t.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (q, k, v) = (Strided::new(&q_storage, q_layout)?, Strided::new(&k_storage, k_layout)?, Strided::new(&v_storage, v_layout)?);
    let (scores_out, z_out) = (matmul::Shared(pattern.as_mut_ptr()), matmul::Shared(z.as_mut_ptr()));
    let tasks: Vec<(usize, usize)> = (0..heads).flat_map(|head| (0..rows).step_by(ATTENTION_ROWS).map(move |row| (head, row))).collect();
    tasks.into_par_iter().for_each(|(head, row)| {
        let n = ATTENTION_ROWS.min(rows - row);
        let kv = head / group;
        // SAFETY: the views' offsets stay inside their storage (the layouts describe tensors of
        // these dims), and each task writes only its own rows of `pattern` ([head, row..row + n, ..])
        // and of `z` ([first_query + row.., head, ..]), which no other task touches.
        unsafe {
            let scores = scores_out.at((head * rows + row) * keys);
            let (query, keys_t) = (q.at(head, first_query + row), k.at(kv, 0));
            product(n, keys, d, scores, keys, query, q.strides[2], q.strides[1], keys_t, k.strides[2], k.strides[1]);
            let block = std::slice::from_raw_parts_mut(scores, n * keys);
            for (offset, scores) in block.chunks_exact_mut(keys).enumerate() {
                softmax_in_place(scores, scale, mask, first_query + row + offset);
            }
            let z = z_out.at((first_query + row) * heads * d + head * d);
            product(n, d, keys, z, heads * d, scores, 1, keys, v.at(kv, 0), v.strides[2], v.strides[1]);
        }
    });
    Ok(())
}

/// `out[rows, cols] = x[rows, depth] w[depth, cols]` on this thread, `out`'s rows
/// `out_stride` apart and each contiguous, `x` and `w` read through their column and row
/// strides. Where both operands' rows are contiguous (every model's q, k^T and v here) it is
/// [`matmul::product_on_this_thread`], each value one chain of fused multiply-adds whatever
/// the block of rows, so blocks of any size give the same bits; otherwise gemm.
///
/// # Safety
/// The pointers and strides describe memory that can be read (written, for `out`, which
/// nothing else touches meanwhile).
#[allow(clippy::too_many_arguments)]
unsafe fn product(rows: usize, cols: usize, depth: usize, out: *mut f32, out_stride: usize, x: *const f32, x_col: usize, x_row: usize, w: *const f32, w_col: usize, w_row: usize) {
    // SAFETY: as the caller's.
    unsafe {
        if x_col == 1 && w_col == 1 {
            matmul::product_on_this_thread(rows, cols, depth, x, x_row, w, w_row, out, out_stride, false);
        } else {
            gemm(rows, cols, depth, out, 1, out_stride as isize, false, x, x_col as isize, x_row as isize, w, w_col as isize, w_row as isize, 0.0, 1.0, false, false, false, Parallelism::None);
        }
    }
}

/// A `[a, b, c]` f32 tensor's numbers read where they lie, with its strides.
struct Strided<'a> {
    values: &'a [f32],
    strides: [usize; 3],
}

impl<'a> Strided<'a> {
    fn new(storage: &'a candle_core::Storage, layout: &Layout) -> Result<Self> {
        let candle_core::Storage::Cpu(CpuStorage::F32(values)) = storage else {
            return Err(candle_core::Error::Msg("attention runs on f32 tensors on the CPU".into()).into());
        };
        let dims = layout.dims();
        let stride = layout.stride();
        let end = layout.start_offset() + dims.iter().zip(stride).map(|(&n, &s)| n.saturating_sub(1) * s).sum::<usize>() + 1;
        if dims.len() != 3 || end > values.len() {
            return Err(candle_core::Error::Msg("attention needs [heads, seq, d] tensors inside their storage".into()).into());
        }
        Ok(Self { values: &values[layout.start_offset()..end], strides: [stride[0], stride[1], stride[2]] })
    }

    /// Where row `row` of head `head` starts.
    fn at(&self, head: usize, row: usize) -> *const f32 {
        self.values[head * self.strides[0] + row * self.strides[1]..].as_ptr()
    }
}

/// Exact GELU, `x * 0.5 * (1 + erf(x / sqrt 2))`, elementwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let shape: Shape = x.shape().clone();
    let (storage, layout) = x.storage_and_layout();
    let mut out = f32_slice(&storage, layout)?.to_vec();
    drop(storage);
    gelu_erf_in_place(&mut out);
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}

/// LayerNorm over the last axis of `x` (`[.., width]`): per row,
/// `(x - mean) / sqrt(var + eps) * weight + bias`, mean and variance in two passes of
/// 16-lane partial sums (candle's `layer_norm` sums one value at a time, a chain of
/// dependent adds per row, and takes the variance as `E[x^2] - mean^2`). Rows are split
/// across rayon's threads and each is computed by one thread in a fixed order, the same
/// on every vector width.
pub fn layer_norm(x: &Tensor, weight: &[f32], bias: &[f32], eps: f32) -> Result<Tensor> {
    let x = x.contiguous()?;
    let shape: Shape = x.shape().clone();
    let width = weight.len();
    if shape.dims().last() != Some(&width) || bias.len() != width || width == 0 {
        return Err(candle_core::Error::Msg(format!("layer norm of width {width} (bias {}) over {:?}", bias.len(), shape.dims())).into());
    }
    let (storage, layout) = x.storage_and_layout();
    let values = f32_slice(&storage, layout)?;
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(width).zip(values.par_chunks(width)).with_min_len(chunk_rows(width)).for_each(|(out, row)| norm_row(row, weight, bias, eps, out));
    drop(storage);
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}

/// `a + b` elementwise (a decoder's residual adds): one plain loop. candle's add
/// hands anything over 64k values to its spinning thread pool, whose wait
/// cost more than the add itself on a busy 2-core machine.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, |a, b, out| {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    })
}

/// `silu(gate) * up` elementwise (the gated MLP of LLaMA-style decoders), with
/// candle's silu, `x / (1 + e^-x)` through libm's expf, so the bits equal
/// candle's `silu` followed by a multiply.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    binary(gate, up, |gate, up, out| {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    })
}

/// Apply `f` to two same-shaped tensors' values, in parallel chunks.
fn binary(a: &Tensor, b: &Tensor, f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(candle_core::Error::Msg(format!("elementwise op on shapes {:?} and {:?}", a.dims(), b.dims())).into());
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    let shape: Shape = a.shape().clone();
    let (a_storage, a_layout) = a.storage_and_layout();
    let (b_storage, b_layout) = b.storage_and_layout();
    let (a_values, b_values) = (f32_slice(&a_storage, a_layout)?, f32_slice(&b_storage, b_layout)?);
    let mut out = vec![0f32; a_values.len()];
    out.par_chunks_mut(1 << 14).zip(a_values.par_chunks(1 << 14).zip(b_values.par_chunks(1 << 14))).for_each(|(out, (a, b))| f(a, b, out));
    drop((a_storage, b_storage));
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}

/// [`gelu_erf`] over a buffer, in place (on a linear layer's output before it becomes a tensor).
pub fn gelu_erf_in_place(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(gelu_slice);
}

/// Rows per rayon task: enough work (about 16k values) to amortise the hand-off.
fn chunk_rows(keys: usize) -> usize {
    (16384 / keys.max(1)).max(1)
}

pub(crate) fn f32_slice<'a>(storage: &'a candle_core::Storage, layout: &Layout) -> Result<&'a [f32]> {
    match storage {
        candle_core::Storage::Cpu(CpuStorage::F32(values)) => {
            let (start, end) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("kernels need a contiguous tensor".into()))?;
            Ok(&values[start..end])
        }
        _ => Err(candle_core::Error::Msg("kernels run on f32 tensors on the CPU".into()).into()),
    }
}

fn softmax_row(row: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { softmax_row_avx512(row, scale) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { softmax_row_avx2(row, scale) };
    }
    softmax_row_generic(row, scale)
}

fn norm_row(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { norm_row_avx512(row, weight, bias, eps, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { norm_row_avx2(row, weight, bias, eps, out) };
    }
    norm_row_generic(row, weight, bias, eps, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn norm_row_avx512(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    norm_row_generic(row, weight, bias, eps, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn norm_row_avx2(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    norm_row_generic(row, weight, bias, eps, out)
}

/// `f` of each of `values`, summed in `LANES` partial sums, then the tail, then the lanes
/// in order: a fixed order whatever width the compiler vectorises to.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut sums = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in sums.iter_mut().zip(chunk) {
            *s += f(x);
        }
    }
    let mut sum = 0f32;
    for &x in tail {
        sum += f(x);
    }
    for s in sums {
        sum += s;
    }
    sum
}

#[inline(always)]
fn norm_row_generic(row: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |x| x) / n;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x - mean;
    }
    let variance = lane_sum(out, |x| x * x) / n;
    let inverse = 1.0 / (variance + eps).sqrt();
    for ((o, &w), &b) in out.iter_mut().zip(weight).zip(bias) {
        *o = *o * inverse * w + b;
    }
}

fn gelu_slice(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { gelu_slice_avx512(values) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { gelu_slice_avx2(values) };
    }
    gelu_slice_generic(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_row_avx2(row: &mut [f32], scale: f32) {
    softmax_row_generic(row, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_slice_avx2(values: &mut [f32]) {
    gelu_slice_generic(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(row: &mut [f32], scale: f32) {
    softmax_row_generic(row, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_slice_avx512(values: &mut [f32]) {
    gelu_slice_generic(values)
}

/// Lanes of the partial max and sum: a fixed shape, so the reduction order is
/// the same whatever width the compiler vectorises to.
const LANES: usize = 16;

#[inline(always)]
fn softmax_row_generic(out: &mut [f32], scale: f32) {
    for o in out.iter_mut() {
        *o *= scale;
    }
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let chunks = out.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in maxes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let mut max = tail.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for m in maxes {
        max = if m > max { m } else { max };
    }
    for o in out.iter_mut() {
        *o = exp(*o - max);
    }
    let sum = lane_sum(out, |x| x);
    // As PyTorch: one division, then a multiply per weight (a division each took a tenth
    // of the softmax's time).
    let inverse = 1.0 / sum;
    for o in out.iter_mut() {
        *o *= inverse;
    }
}

#[inline(always)]
fn gelu_slice_generic(values: &mut [f32]) {
    for v in values.iter_mut() {
        let x = *v;
        *v = x * 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// e^x in f32 for x <= 0 (softmax's shifted scores), branch-free so that it
/// vectorises: Cody-Waite reduction x = n ln 2 + r, Cephes' expf polynomial on
/// r, 2^n from the exponent bits. Within 2 ulp of the true value; below
/// ln(f32::MIN_POSITIVE) it returns 0 (PyTorch flushes there too, to within
/// 1e-38 of the softmax's values).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.33;
    let xc = if underflow { 0.0 } else { x };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * (r * r) + r + 1.0;
    let bits = ((t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23) as u32;
    let y = y * f32::from_bits(bits);
    if underflow {
        0.0
    } else {
        y
    }
}

/// erf in f32, branch-free: an odd polynomial below |x| = 0.921875, and
/// 1 - e^p(|x|) above, with the sign restored (the shape of N. Juffa's erff).
/// Within 2 ulp of the f64 erf over the whole line (checked in the tests).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let s = x * x;
    // Inner: erf(x) = x + x * q(x^2).
    let mut q = -5.967_617e-4f32;
    q = q * s + 4.991_194e-3;
    q = q * s + -2.676_813_5e-2;
    q = q * s + 1.128_199_3e-1;
    q = q * s + -3.761_253_4e-1;
    q = q * s + 1.283_791_7e-1;
    let inner = q * x + x;
    // Outer: 1 - exp(p(a)), p(a) ~ -a^2 - log(a sqrt(pi)) - ...; a clamped so e^p stays finite.
    let t = if a > 4.0 { 4.0 } else { a };
    let mut r = -1.728_534_7e-5f32 * t + 3.831_971_3e-4;
    let u = -3.883_964_4e-3f32 * t + 2.425_462_2e-2;
    r = r * (t * t) + u;
    r = r * t + -1.067_778_8e-1;
    r = r * t + -6.348_467e-1;
    r = r * t + -1.287_175_1e-1;
    r = r * t + -t;
    let outer = 1.0 - exp(r);
    let outer = if x < 0.0 { -outer } else { outer };
    if a > 0.921_875 {
        outer
    } else {
        inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// The copy chosen at run time (AVX-512 or AVX2 where the CPU has them) rounds exactly as
    /// the baseline SSE2 build of the same code: the maps do not depend on the CPU's vector width.
    #[test]
    fn vector_widths_give_the_same_bits() {
        let input: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 10007) as f32 / 1000.0 - 5.0).collect();
        let (mut chosen, mut baseline) = (input.clone(), input.clone());
        gelu_slice(&mut chosen);
        gelu_slice_generic(&mut baseline);
        assert!(chosen == baseline, "GELU differs between vector widths");
        for width in [1, 15, 16, 17, 384, 1000] {
            let (weight, bias) = (&input[2000..2000 + width], &input[3500..3500 + width]);
            let (mut chosen, mut baseline) = (vec![0f32; width], vec![0f32; width]);
            norm_row(&input[..width], weight, bias, 1e-12, &mut chosen);
            norm_row_generic(&input[..width], weight, bias, 1e-12, &mut baseline);
            assert!(chosen == baseline, "layer norm of width {width} differs between vector widths");
        }
        for len in [1, 15, 16, 17, 100, 512, 1000] {
            let (mut chosen, mut baseline) = (input[..len].to_vec(), input[..len].to_vec());
            softmax_row(&mut chosen, 0.37);
            softmax_row_generic(&mut baseline, 0.37);
            assert!(chosen == baseline, "softmax of {len} keys differs between vector widths");
        }
    }

    /// LayerNorm against its f64 value, within the rounding bound of the arithmetic: each
    /// output goes through at most 2 n + 8 roundings (two sums of n terms, the subtraction,
    /// square root, division and three products and a sum), each scaling by (1 + u), so its
    /// error is below gamma_(2n+8) (|w| (|x| + mean |x|) / std + |b|), u = 2^-24.
    #[test]
    fn layer_norm_matches_f64() {
        let values: Vec<f32> = (0..50 * 384).map(|i| ((i * 7919) % 10007) as f32 / 1000.0 - 3.0).collect();
        let weight: Vec<f32> = (0..384).map(|i| ((i * 31) % 97) as f32 / 50.0 - 0.9).collect();
        let bias: Vec<f32> = (0..384).map(|i| ((i * 17) % 89) as f32 / 40.0 - 1.1).collect();
        for width in [7, 100, 384] {
            let x = Tensor::from_vec(values[..50 * width].to_vec(), (50, width), &Device::Cpu).unwrap();
            let out: Vec<f32> = layer_norm(&x, &weight[..width], &bias[..width], 1e-12).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let gamma = (2 * width + 8) as f64 * f64::powi(2.0, -24) / (1.0 - (2 * width + 8) as f64 * f64::powi(2.0, -24));
            for (row, got) in values[..50 * width].chunks_exact(width).zip(out.chunks_exact(width)) {
                let n = width as f64;
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
                let mean_abs = row.iter().map(|&v| (v as f64).abs()).sum::<f64>() / n;
                let std = (row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n + 1e-12).sqrt();
                for (i, (&x, &y)) in row.iter().zip(got).enumerate() {
                    let (w, b) = (weight[i] as f64, bias[i] as f64);
                    let exact = (x as f64 - mean) / std * w + b;
                    let bound = gamma * (w.abs() * ((x as f64).abs() + mean_abs) / std + b.abs());
                    assert!((y as f64 - exact).abs() <= bound, "width {width}: {y} against {exact} (bound {bound})");
                }
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            worst = worst.max(ulps(exp(x), (x as f64).exp() as f32));
        }
        assert!(worst <= 2, "exp is {worst} ulp off");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn erf_is_within_two_ulp_of_f64() {
        // The f64 erf candle uses for its own gelu_erf is the reference.
        let mut worst = (0, 0.0);
        for i in -300_000..=300_000 {
            let x = 6.0 * i as f32 / 300_000.0;
            let want = candle_core::cpu::erf::erf_f64(x as f64) as f32;
            let off = ulps(erf(x), want);
            if off > worst.0 {
                worst = (off, x);
            }
        }
        assert!(worst.0 <= 2, "erf is {} ulp off at {}", worst.0, worst.1);
    }
}
