//! The attention core every architecture shares, with its hook points.
//!
//! candle-transformers keeps the softmax weights in a private local, so attnmap
//! carries this copy. It follows transformers' `eager_attention_forward`
//! (transformers 4.5x, e.g. models/bert/modeling_bert.py): scores = QK^T *
//! d^-1/2, plus an additive mask, softmax over keys in f32, then P V. The scale,
//! mask and softmax run as one fused op ([`super::kernels::masked_softmax`]),
//! and long inputs run in blocks of queries ([`block_rows`]).
//! What it adds: `hook_pattern`, `hook_v`, `hook_z` and `hook_result` are
//! pushed to the sink as they are computed.

use candle_core::Tensor;

pub use super::kernels::Mask;
use super::kernels::masked_softmax;

use crate::error::Result;
use crate::hooks::{HookKind, HookPoint, HookSink};

/// Scores held at once per layer, in f32 values: longer inputs are computed in
/// blocks of queries (`[heads, block, keys]` at a time), so memory grows with
/// seq x block instead of seq x seq. 2^22 values (16 MiB) keeps MiniLM's 512
/// tokens and SmolLM2's 680 in one block, where blocking would only cost time.
const SCORE_BUDGET: usize = 1 << 22;

/// Queries per block for `heads` heads over `keys` keys.
pub fn block_rows(heads: usize, keys: usize) -> usize {
    (SCORE_BUDGET / (heads * keys).max(1)).max(1)
}

/// Run attention for one layer. `q` is `[heads, seq, d]`; `k` and `v` are
/// `[kv_heads, seq, d]` (kv_heads divides heads: grouped-query attention repeats
/// each KV head for `heads / kv_heads` query heads, as transformers' repeat_kv).
/// `mask` says which keys each query sees. Returns z, `[heads, seq, d]`.
///
/// The pattern is computed in query blocks of [`block_rows`] and recorded at
/// `hook_pattern` for the heads the sink keeps ([`HookSink::pattern_heads`]);
/// the blocks of the other heads are dropped as soon as they are multiplied by V.
pub fn attend(layer: usize, q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, scale: f64, sink: &mut dyn HookSink) -> Result<Tensor> {
    attend_in_blocks(layer, q, k, v, mask, scale, sink, block_rows(q.dim(0)?, k.dim(1)?))
}

/// [`attend`] with an explicit block size (tests compare block sizes).
#[allow(clippy::too_many_arguments)]
pub fn attend_in_blocks(layer: usize, q: &Tensor, k: &Tensor, v: &Tensor, mask: Mask, scale: f64, sink: &mut dyn HookSink, rows: usize) -> Result<Tensor> {
    let (heads, seq, _) = q.dims3()?;
    let kv_heads = k.dim(0)?;
    let keys = k.dim(1)?;
    if sink.wants(HookPoint::new(layer, HookKind::V)) {
        sink.record(HookPoint::new(layer, HookKind::V), &v.transpose(0, 1)?.contiguous()?)?;
    }
    let (k, v) = if kv_heads == heads { (k.clone(), v.clone()) } else { (repeat_kv(k, heads / kv_heads)?, repeat_kv(v, heads / kv_heads)?) };
    let (q, k_t, v) = (q.contiguous()?, k.t()?.contiguous()?, v.contiguous()?);
    let pattern_point = HookPoint::new(layer, HookKind::Pattern);
    let kept: Vec<usize> = match sink.pattern_heads(layer) {
        _ if !sink.wants(pattern_point) => Vec::new(),
        Some(heads_kept) => heads_kept.into_iter().filter(|&h| h < heads).collect(),
        None => (0..heads).collect(),
    };
    let rows = rows.max(1);
    let z = if rows >= seq {
        let pattern = masked_softmax(&q.matmul(&k_t)?, scale, mask, 0)?;
        if kept.len() == heads {
            sink.record(pattern_point, &pattern)?;
        } else if !kept.is_empty() {
            let index = Tensor::new(kept.iter().map(|&h| h as u32).collect::<Vec<_>>(), q.device())?;
            sink.record(pattern_point, &pattern.index_select(&index, 0)?)?;
        }
        pattern.matmul(&v)?
    } else {
        // Only the kept heads' rows are copied out of each block, straight into their place.
        let mut maps = vec![0f32; kept.len() * seq * keys];
        let mut blocks = Vec::with_capacity(seq.div_ceil(rows));
        for start in (0..seq).step_by(rows) {
            let n = rows.min(seq - start);
            let pattern = masked_softmax(&q.narrow(1, start, n)?.contiguous()?.matmul(&k_t)?, scale, mask, start)?;
            if !kept.is_empty() {
                let values = pattern.flatten_all()?.to_vec1::<f32>()?;
                for (slot, &head) in kept.iter().enumerate() {
                    let from = &values[head * n * keys..(head + 1) * n * keys];
                    let to = (slot * seq + start) * keys;
                    maps[to..to + n * keys].copy_from_slice(from);
                }
            }
            blocks.push(pattern.matmul(&v)?);
        }
        if !kept.is_empty() {
            sink.record(pattern_point, &Tensor::from_vec(maps, (kept.len(), seq, keys), q.device())?)?;
        }
        Tensor::cat(&blocks, 1)?
    };
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
