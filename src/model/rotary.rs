//! Rotary position embeddings (RoPE), shared by the decoders that rotate q and k.
//!
//! Follows transformers 5.24 `modeling_rope_utils.py` (`compute_default_rope_parameters`)
//! and `models/gpt_neox/modeling_gpt_neox.py` (`rotate_half`, `apply_rotary_pos_emb`):
//! the "half" layout (dimension i pairs with i + dims/2, not with i + 1), on the first
//! `dims` of each head, the rest passed through. The frequencies are computed in f32 as
//! transformers does, not in f64 as candle-transformers' models do, so that the
//! angles at long positions round the same way.

use candle_core::{Device, Tensor, D};

use crate::error::Result;

/// cos and sin of every position's angles, `[seq, dims]`, for one input length.
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    dims: usize,
}

impl Rotary {
    /// Default (unscaled) RoPE with base `theta` over the first `dims` (even) of each head,
    /// for positions `0..seq`.
    pub fn new(dims: usize, theta: f64, seq: usize) -> Result<Self> {
        // inv_freq = 1 / theta ** (arange(0, dims, 2) / dims), all in f32.
        let inv_freq: Vec<f32> = (0..dims)
            .step_by(2)
            .map(|i| 1.0 / (theta as f32).powf(i as f32 / dims as f32))
            .collect();
        // freqs = position * inv_freq; emb = cat(freqs, freqs).
        let angles: Vec<f32> = (0..seq)
            .flat_map(|position| {
                let freqs: Vec<f32> = inv_freq.iter().map(|f| position as f32 * f).collect();
                [freqs.clone(), freqs].concat()
            })
            .collect();
        let angles = Tensor::from_vec(angles, (seq, dims), &Device::Cpu)?;
        Ok(Self { cos: angles.cos()?, sin: angles.sin()?, dims })
    }

    /// Rotate `x`, `[heads, seq, head_dim]`: `x * cos + rotate_half(x) * sin` on the
    /// first `dims`, the other dimensions unchanged.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.dims == 0 {
            return Ok(x.clone());
        }
        let head_dim = x.dim(D::Minus1)?;
        let rotated = x.narrow(D::Minus1, 0, self.dims)?;
        let half = self.dims / 2;
        let first = rotated.narrow(D::Minus1, 0, half)?;
        let second = rotated.narrow(D::Minus1, half, half)?;
        let rotate_half = Tensor::cat(&[&second.neg()?, &first], D::Minus1)?;
        let embedded = (rotated.broadcast_mul(&self.cos)? + rotate_half.broadcast_mul(&self.sin)?)?;
        if self.dims == head_dim {
            return Ok(embedded);
        }
        let passed = x.narrow(D::Minus1, self.dims, head_dim - self.dims)?;
        Ok(Tensor::cat(&[&embedded, &passed], D::Minus1)?)
    }
}
