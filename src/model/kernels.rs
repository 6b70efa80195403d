//! The elementwise and row-wise ops that dominate a CPU forward pass after the
//! matmuls: the fused scale + mask + softmax over attention scores, and exact
//! (erf) GELU. candle's versions are scalar (its GELU evaluates erf in f64 one
//! value at a time) and `softmax_last_dim` runs on one thread; PyTorch's are
//! vectorised and parallel, which is most of the gap measured in issue 10.
//!
//! Both are written as plain loops over contiguous rows with no branches in
//! the inner loop, so the compiler vectorises them; an AVX2 copy is chosen at
//! run time. No fused multiply-add is used (Rust never contracts `a * b + c`),
//! so the AVX2 and SSE2 copies round identically and every result is the
//! same on every x86-64 CPU, on any number of threads: rows are split across
//! rayon's threads, but each row is computed by one thread in a fixed order.
//!
//! What they mirror: PyTorch's `_vec_softmax_lastdim`
//! (aten/src/ATen/native/cpu/SoftMaxKernel.cpp: max, exp(x - max), sum,
//! divide) with transformers' `eager_attention_forward` arithmetic before it
//! (scores * scaling + mask); and `GELUActivation` = `x * 0.5 * (1 + erf(x /
//! sqrt 2))` (activations.py, what BERT's "gelu" means).

use candle_core::{CpuStorage, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

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
    let input = f32_slice(&storage, layout)?;
    let mut out = vec![0f32; heads * rows * keys];
    // transformers multiplies the f32 scores by the Python float `scaling`, which PyTorch rounds to f32.
    let scale = scale as f32;
    out.par_chunks_mut(keys).zip(input.par_chunks(keys)).enumerate().with_min_len(chunk_rows(keys)).for_each(|(index, (out, row))| {
        let query = first_query + index % rows;
        let visible = mask.visible(query, keys);
        if visible.is_empty() {
            out.fill(f32::NAN);
            return;
        }
        softmax_row(&row[visible.clone()], scale, &mut out[visible]);
    });
    drop(storage);
    Ok(Tensor::from_vec(out, (heads, rows, keys), &Device::Cpu)?)
}

/// Exact GELU, `x * 0.5 * (1 + erf(x / sqrt 2))`, elementwise.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let shape: Shape = x.shape().clone();
    let (storage, layout) = x.storage_and_layout();
    let input = f32_slice(&storage, layout)?;
    let mut out = vec![0f32; input.len()];
    out.par_chunks_mut(1 << 14).zip(input.par_chunks(1 << 14)).for_each(|(out, input)| gelu_slice(input, out));
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

fn softmax_row(row: &[f32], scale: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { softmax_row_avx2(row, scale, out) };
    }
    softmax_row_generic(row, scale, out)
}

fn gelu_slice(input: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { gelu_slice_avx2(input, out) };
    }
    gelu_slice_generic(input, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_row_avx2(row: &[f32], scale: f32, out: &mut [f32]) {
    softmax_row_generic(row, scale, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_slice_avx2(input: &[f32], out: &mut [f32]) {
    gelu_slice_generic(input, out)
}

/// Lanes of the partial max and sum: a fixed shape, so the reduction order is
/// the same whatever width the compiler vectorises to.
const LANES: usize = 16;

#[inline(always)]
fn softmax_row_generic(row: &[f32], scale: f32, out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x * scale;
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
    let mut sums = [0f32; LANES];
    let chunks = out.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in sums.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    let mut sum = tail.iter().sum::<f32>();
    for s in sums {
        sum += s;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[inline(always)]
fn gelu_slice_generic(input: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(input) {
        *o = x * 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
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
