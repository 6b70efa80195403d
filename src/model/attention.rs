//! The attention core every architecture shares, with its hook points.
//!
//! candle-transformers keeps the softmax weights in a private local, so attnmap
//! carries this copy. It follows transformers' `eager_attention_forward`
//! (transformers 4.5x, e.g. models/bert/modeling_bert.py): scores = QK^T *
//! d^-1/2, plus an additive mask, softmax over keys in f32, then P V. Scores,
//! scale + mask + softmax and P V run fused per head and block of 64 queries
//! ([`super::kernels::attention_block`]), and long inputs run in blocks of
//! queries ([`block_rows`]) so only a block's scores are held at once.
//! What it adds: `hook_pattern`, `hook_v`, `hook_z`, `hook_result` and
//! `hook_value_norm` are pushed to the sink as they are computed.

use candle_core::Tensor;

pub use super::kernels::Mask;
use super::kernels::attention_block;

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
    let (heads, seq, d) = q.dims3()?;
    let keys = k.dim(1)?;
    if sink.wants(HookPoint::new(layer, HookKind::V)) {
        sink.record(HookPoint::new(layer, HookKind::V), &v.transpose(0, 1)?.contiguous()?)?;
    }
    let pattern_point = HookPoint::new(layer, HookKind::Pattern);
    let kept: Vec<usize> = match sink.pattern_heads(layer) {
        _ if !sink.wants(pattern_point) => Vec::new(),
        Some(heads_kept) => heads_kept.into_iter().filter(|&h| h < heads).collect(),
        None => (0..heads).collect(),
    };
    let rows = rows.clamp(1, seq.max(1));
    let k_t = k.transpose(1, 2)?.contiguous()?;
    // z is written straight into [seq, heads, d], the layout merge_heads and hook_z read.
    let mut z = vec![0f32; seq * heads * d];
    let mut block = zeroed(heads * rows * keys);
    if rows >= seq && kept.len() == heads {
        // One block holding every head: it is the pattern itself, handed over without a copy.
        attention_block(q, &k_t, v, scale, mask, 0, seq, &mut block, &mut z)?;
        sink.record_pattern(layer, block, (heads, seq, keys))?;
    } else {
        // Only the kept heads' rows are copied out of each block, straight into their place.
        let mut maps = zeroed(kept.len() * seq * keys);
        for start in (0..seq).step_by(rows) {
            let n = rows.min(seq - start);
            let block = &mut block[..heads * n * keys];
            attention_block(q, &k_t, v, scale, mask, start, n, block, &mut z)?;
            for (slot, &head) in kept.iter().enumerate() {
                let to = (slot * seq + start) * keys;
                maps[to..to + n * keys].copy_from_slice(&block[head * n * keys..(head + 1) * n * keys]);
            }
        }
        if !kept.is_empty() {
            sink.record_pattern(layer, maps, (kept.len(), seq, keys))?;
        }
    }
    let z = Tensor::from_vec(z, (seq, heads, d), q.device())?;
    if sink.wants(HookPoint::new(layer, HookKind::Z)) {
        sink.record(HookPoint::new(layer, HookKind::Z), &z)?;
    }
    Ok(z.transpose(0, 1)?)
}

/// `len` zeros, in transparent huge pages where the buffer is large (Linux): a 512-token
/// MiniLM layer's pattern is 12 MB, 3,072 first-touch page faults in 4 KiB pages and 6 in
/// 2 MiB ones, and the softmax and the capture then walk it with fewer TLB misses.
fn zeroed(len: usize) -> Vec<f32> {
    let values = vec![0f32; len];
    #[cfg(target_os = "linux")]
    if len * 4 >= 4 << 20 {
        // madvise takes whole pages: the part of the buffer from its first page boundary on.
        let (start, end) = (values.as_ptr() as usize, values.as_ptr() as usize + len * 4);
        let page = 4096;
        let first = start.next_multiple_of(page);
        if end > first {
            // SAFETY: the range lies inside `values`' allocation; MADV_HUGEPAGE only changes
            // how the kernel backs those pages, never their contents (zeros either way).
            unsafe { libc::madvise(first as *mut libc::c_void, (end - first) / page * page, libc::MADV_HUGEPAGE) };
        }
    }
    values
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

/// Merge `[heads, seq, d]` back into `[seq, heads * d]` (no copy for [`attend`]'s z, which
/// lies in that order already).
pub fn merge_heads(z: &Tensor) -> Result<Tensor> {
    let (heads, seq, d) = z.dims3()?;
    Ok(z.transpose(0, 1)?.contiguous()?.reshape((seq, heads * d))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{ActivationCache, HookFilter};
    use candle_core::Device;

    /// Fixed pseudo-random values (a hash, no RNG crate), roughly in [-2, 2].
    fn values(shape: (usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2;
        let v: Vec<f32> = (0..n as u64).map(|i| (((i + 1) * 2654435761 + seed * 40503) % 1_000_003) as f32 / 250_000.0 - 2.0).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn run(mask: Mask, rows: usize, heads: Option<Vec<usize>>) -> (Vec<f32>, Vec<f32>) {
        let (q, k, v) = (values((4, 37, 8), 1), values((2, 37, 8), 2), values((2, 37, 8), 3));
        let mut cache = ActivationCache::new(HookFilter::all_patterns()).with_pattern_heads(heads);
        let z = attend_in_blocks(0, &q, &k, &v, mask, 0.35, &mut cache, rows).unwrap();
        let pattern = cache.take(HookPoint::new(0, HookKind::Pattern)).unwrap();
        (pattern.flatten_all().unwrap().to_vec1().unwrap(), z.flatten_all().unwrap().to_vec1().unwrap())
    }

    const MASKS: [Mask; 3] = [Mask::None, Mask::Causal { window: None }, Mask::Causal { window: Some(5) }];

    /// Query blocks change how much is held at once, not a single bit of the maps or of z.
    #[test]
    fn blocks_equal_one_block_bit_for_bit() {
        for mask in MASKS {
            let (pattern, z) = run(mask, 37, None);
            for rows in [1, 5, 36] {
                let (blocked_pattern, blocked_z) = run(mask, rows, None);
                assert!(pattern == blocked_pattern, "{mask:?}, blocks of {rows}: patterns differ");
                assert!(z == blocked_z, "{mask:?}, blocks of {rows}: z differs");
            }
            // Keeping one head keeps exactly that head's map, blocked or not.
            let per_head = 37 * 37;
            for rows in [37, 5] {
                let (head, _) = run(mask, rows, Some(vec![2]));
                assert!(head == pattern[2 * per_head..3 * per_head], "{mask:?}, blocks of {rows}: head 2 differs");
            }
        }
    }

    /// The fused op against the unfused arithmetic it replaces (candle's scale, additive
    /// -inf mask and softmax_last_dim): the same up to float rounding, exactly 0 where masked.
    #[test]
    fn fused_softmax_matches_the_unfused_arithmetic() {
        let scores = values((3, 37, 37), 9);
        for mask in MASKS {
            let additive: Vec<f32> =
                (0..37).flat_map(|q| (0..37).map(move |k| if mask.visible(q, 37).contains(&k) { 0.0 } else { f32::NEG_INFINITY })).collect();
            let additive = Tensor::from_vec(additive, (37, 37), &Device::Cpu).unwrap();
            let reference = candle_nn::ops::softmax_last_dim(&(&scores * 0.35).unwrap().broadcast_add(&additive).unwrap()).unwrap();
            let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
            let fused: Vec<f32> = crate::model::kernels::masked_softmax(&scores, 0.35, mask, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (a, b) in fused.iter().zip(&reference) {
                // A few ulp of weights below 1: exp within 2 ulp, a sum in another order.
                assert!((a - b).abs() <= 4e-7, "{mask:?}: {a} against {b}");
                assert_eq!(*a == 0.0, *b == 0.0, "{mask:?}: masked entries must be exactly 0");
            }
        }
    }

    /// The kernels split rows across threads but compute each row alone: any pool size gives the same bits.
    #[test]
    fn kernels_are_bit_identical_across_thread_counts() {
        let scores = values((3, 37, 700), 4);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let p = crate::model::kernels::masked_softmax(&scores, 0.2, Mask::Causal { window: None }, 3).unwrap();
                let g = crate::model::kernels::gelu_erf(&scores).unwrap();
                let (weight, bias) = (vec![0.7f32; 700], vec![-0.2f32; 700]);
                let n = crate::model::kernels::layer_norm(&scores, &weight, &bias, 1e-12).unwrap();
                let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (flat(p), flat(g), flat(n))
            })
        };
        let one = on(1);
        for threads in [2, 3, 8] {
            assert!(on(threads) == one, "{threads} threads differ from 1");
        }
    }

    /// Exact GELU within 2 ulp-ish of candle's f64 evaluation (what the model used before).
    #[test]
    fn gelu_matches_candle_gelu_erf() {
        let x = values((1, 50, 1000), 5);
        let ours: Vec<f32> = crate::model::kernels::gelu_erf(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let theirs: Vec<f32> = x.gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() <= 4e-7 * b.abs().max(1.0), "{a} against {b}");
        }
    }
}
