//! The attention core every architecture shares, with its hook points.
//!
//! candle-transformers keeps the softmax weights in a private local, so attnmap
//! carries this copy. It follows transformers' `eager_attention_forward`
//! (transformers 4.5x, e.g. models/bert/modeling_bert.py): scores = QK^T *
//! d^-1/2, plus an additive mask, softmax over keys in f32, then P V.
//! What it adds: `hook_pattern`, `hook_v`, `hook_z`, `hook_result` and
//! `hook_value_norm` are pushed to the sink as they are computed.

use candle_core::Tensor;

use crate::error::Result;
use crate::hooks::{HookKind, HookPoint, HookSink};

/// Run attention for one layer. `q` is `[heads, seq, d]`; `k` and `v` are
/// `[kv_heads, seq, d]` (kv_heads divides heads: grouped-query attention repeats
/// each KV head for `heads / kv_heads` query heads, as transformers' repeat_kv).
/// `mask` is added to the scores (`[seq, seq]`, 0 or -inf). Returns z, `[heads, seq, d]`.
pub fn attend(
    layer: usize,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    sink: &mut dyn HookSink,
) -> Result<Tensor> {
    let heads = q.dim(0)?;
    let kv_heads = k.dim(0)?;
    if sink.wants(HookPoint::new(layer, HookKind::V)) {
        sink.record(HookPoint::new(layer, HookKind::V), &v.transpose(0, 1)?.contiguous()?)?;
    }
    let (k, v) = if kv_heads == heads { (k.clone(), v.clone()) } else { (repeat_kv(k, heads / kv_heads)?, repeat_kv(v, heads / kv_heads)?) };
    let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?;
    let scores = match mask {
        Some(mask) => scores.broadcast_add(mask)?,
        None => scores,
    };
    let pattern = candle_nn::ops::softmax_last_dim(&scores)?;
    sink.record(HookPoint::new(layer, HookKind::Pattern), &pattern)?;
    let z = pattern.matmul(&v.contiguous()?)?;
    if sink.wants(HookPoint::new(layer, HookKind::Z)) {
        sink.record(HookPoint::new(layer, HookKind::Z), &z.transpose(0, 1)?.contiguous()?)?;
    }
    Ok(z)
}

/// Each head's own contribution to the output projection, `[seq, heads, d_model]`,
/// recorded at `hook_result` when the sink wants it. `w_o` is the output
/// projection weight `[d_model, heads * d]` (bias excluded, as TransformerLens).
pub fn record_result(layer: usize, z: &Tensor, w_o: &Tensor, sink: &mut dyn HookSink) -> Result<()> {
    let point = HookPoint::new(layer, HookKind::Result);
    if !sink.wants(point) {
        return Ok(());
    }
    let (heads, _seq, d) = z.dims3()?;
    let per_head = (0..heads)
        .map(|h| z.get(h)?.matmul(&w_o.narrow(1, h * d, d)?.t()?))
        .collect::<candle_core::Result<Vec<_>>>()?;
    sink.record(point, &Tensor::stack(&per_head, 1)?)?;
    Ok(())
}

/// ‖v_j W_O^h‖ for every query head h and key j, `[heads, seq]`, recorded at
/// `hook_value_norm` when the sink wants it (the `norm` view's per-key factor). `v` is
/// `[kv_heads, seq, d]` as passed to [`attend`] (value bias included); `w_o` is the output
/// projection weight `[d_model, heads * d]`, its bias excluded (Kobayashi et al. 2020 leave
/// it out: it does not depend on the key). Query head h reads KV group h / (heads / kv_heads).
pub fn record_value_norm(layer: usize, v: &Tensor, w_o: &Tensor, sink: &mut dyn HookSink) -> Result<()> {
    let point = HookPoint::new(layer, HookKind::ValueNorm);
    if !sink.wants(point) {
        return Ok(());
    }
    let (kv_heads, _seq, d) = v.dims3()?;
    let heads = w_o.dim(1)? / d;
    let group = heads / kv_heads.max(1);
    let norms = (0..heads)
        .map(|h| v.get(h / group)?.matmul(&w_o.narrow(1, h * d, d)?.t()?)?.sqr()?.sum(1)?.sqrt())
        .collect::<candle_core::Result<Vec<_>>>()?;
    sink.record(point, &Tensor::stack(&norms, 0)?)?;
    Ok(())
}

/// Split `[seq, heads * d]` into `[heads, seq, d]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (seq, width) = x.dims2()?;
    Ok(x.reshape((seq, heads, width / heads))?.transpose(0, 1)?.contiguous()?)
}

/// Merge `[heads, seq, d]` back into `[seq, heads * d]`.
pub fn merge_heads(z: &Tensor) -> Result<Tensor> {
    let (heads, seq, d) = z.dims3()?;
    Ok(z.transpose(0, 1)?.contiguous()?.reshape((seq, heads * d))?)
}

fn repeat_kv(x: &Tensor, times: usize) -> candle_core::Result<Tensor> {
    let (kv_heads, seq, d) = x.dims3()?;
    x.unsqueeze(1)?.expand((kv_heads, times, seq, d))?.reshape((kv_heads * times, seq, d))
}

/// The causal mask: 0 on and below the diagonal, -inf above.
pub fn causal_mask(seq: usize) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq)
        .flat_map(|q| (0..seq).map(move |k| if k > q { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(values, (seq, seq), &candle_core::Device::Cpu)?)
}
