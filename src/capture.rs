//! The captured maps: per layer `[heads, query, key]` f32 softmax weights plus
//! the tokens they are drawn over. Everything downstream (analysis, rendering,
//! files) reads a `Capture`, never a tensor.

use candle_core::Tensor;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hooks::{ActivationCache, HookFilter, HookKind, HookPoint, HookSink};
use crate::model::{ArchInfo, AttentionModel};
use crate::tokenize::Encoded;

/// Attention patterns of one run over one input.
#[derive(Debug, Clone)]
pub struct Capture {
    pub input: Encoded,
    pub layers: usize,
    pub heads: usize,
    pub seq: usize,
    /// Decoder attention: keys after the query are masked (exactly 0).
    pub causal: bool,
    /// `[kept heads * seq * seq]` for each captured layer, `None` for layers not kept.
    layer_maps: Vec<Option<Vec<f32>>>,
    /// The heads a captured layer holds, in order; `None` for all of them.
    kept_heads: Option<Vec<usize>>,
    /// `[heads * seq]` ‖v_j W_O^h‖ per layer, kept only when `HookKind::ValueNorm` was asked for.
    value_norms: Vec<Option<Vec<f32>>>,
}

/// The output of one forward pass: the capture, other hook values, and the last hidden states.
pub struct Run {
    pub capture: Capture,
    /// The other hook kinds asked for (the patterns are moved into `capture`).
    pub cache: ActivationCache,
    pub hidden: Tensor,
}

impl Capture {
    /// Run `model` on `input`, keeping the patterns of `layers` (all when `None`)
    /// and any other hook kinds in `extra`.
    pub fn run(model: &dyn AttentionModel, input: &Encoded, layers: Option<Vec<usize>>, extra: &[HookKind]) -> Result<Run> {
        Self::run_heads(model, input, layers, None, extra)
    }

    /// [`Capture::run`] keeping only the maps of `heads` (all when `None`): a long input's
    /// attention is then computed in query blocks of which only those heads' rows are kept
    /// (what `show` asks for), and the other heads' maps are never held whole.
    pub fn run_heads(model: &dyn AttentionModel, input: &Encoded, layers: Option<Vec<usize>>, heads: Option<Vec<usize>>, extra: &[HookKind]) -> Result<Run> {
        let info = model.info();
        if let Some(wanted) = &heads {
            for &head in wanted {
                check_head(info, head)?;
            }
        }
        let kept_heads = heads.map(|mut h| {
            h.sort_unstable();
            h.dedup();
            h
        });
        if let Some(wanted) = &layers {
            for &layer in wanted {
                check_layer(info, layer)?;
            }
        }
        check_ids(info, input)?;
        let mut kinds = vec![HookKind::Pattern];
        kinds.extend(extra.iter().copied().filter(|k| *k != HookKind::Pattern));
        let mut cache = ActivationCache::new(HookFilter { kinds, layers: layers.clone() }).with_pattern_heads(kept_heads.clone());
        let mut sink = KeepPatterns { cache: &mut cache, maps: vec![None; info.layers] };
        let hidden = on_pool(|| model.forward(input, &mut sink))?;
        let mut layer_maps = sink.maps;
        let seq = input.len();
        for (layer, slot) in layer_maps.iter_mut().enumerate() {
            // A pattern recorded as a tensor is moved out of the cache, so it is not held twice once copied.
            if let Some(pattern) = cache.take(HookPoint::new(layer, HookKind::Pattern)) {
                *slot = Some(pattern.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        let mut value_norms = vec![None; info.layers];
        for (layer, slot) in value_norms.iter_mut().enumerate() {
            if let Some(norms) = cache.get(HookPoint::new(layer, HookKind::ValueNorm)) {
                *slot = Some(norms.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        let capture = Capture { input: input.clone(), layers: info.layers, heads: info.heads, seq, causal: info.causal, layer_maps, kept_heads, value_norms };
        capture.check_finite()?;
        Ok(Run { capture, cache, hidden })
    }

    /// Run `model` on `input`, handing every layer's maps to `sink` as soon as the layer is
    /// computed and keeping none of them (ripgrep's searcher and its `Sink`): what a dump of a
    /// model with thousands of heads needs. With `value_norms` each layer also carries its
    /// ‖v_j W_O^h‖ (the norm view). The maps are checked for NaN/inf before the sink sees them.
    ///
    /// The forward pass runs on a thread of its own and the sink on the caller's, a layer
    /// apart: while the sink writes and draws layer l, the model computes layer l + 1, so
    /// neither waits on the other (both share the rayon pool; what one leaves idle the other
    /// uses). The channel between them holds one layer, so at most three layers' maps exist
    /// at once: one being computed, one waiting, one at the sink.
    pub fn stream(model: &dyn AttentionModel, input: &Encoded, value_norms: bool, sink: &mut dyn LayerSink) -> Result<Tensor> {
        let info = model.info();
        check_ids(info, input)?;
        let seq = input.len();
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Layer>(1);
            let forward = scope.spawn(move || -> Result<Tensor> {
                let mut hooks = StreamHooks { sender, value_norms, seq, pending: None, error: None };
                // Not on the pool (as Capture::run is): a worker blocked on a full channel would
                // leave the sink's drawing one thread short (on a pool of one, none: it hung),
                // and here the sink's work keeps the pool busy anyway. Measured on a SmolLM2
                // dump, 2 threads: 0.87 s off the pool, 1.04 s on it.
                let hidden = model.forward(input, &mut hooks);
                // The hooks' own error (a non-finite map), not the forward pass's wrapping of it.
                if let Some(error) = hooks.error.take() {
                    return Err(error);
                }
                let hidden = hidden?;
                if let Some(pending) = hooks.pending.take() {
                    return Err(Error::Input(format!("layer {} computed no {}", pending.layer, if pending.patterns.is_none() { "attention pattern" } else { "value norms" })));
                }
                Ok(hidden)
            });
            let mut sink_error = None;
            for layer in receiver.iter() {
                let per_head = (seq * seq).max(1);
                let maps = LayerMaps { layer: layer.layer, heads: layer.patterns.len() / per_head, seq, patterns: &layer.patterns, value_norms: layer.norms.as_deref() };
                if let Err(error) = sink.layer(maps) {
                    // Hanging up stops the forward pass at its next layer.
                    sink_error = Some(error);
                    break;
                }
            }
            drop(receiver);
            // A panic in the pass (a bug: the hook has said so in one line) goes on as one
            // here, as it would have on this thread.
            let hidden = forward.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match sink_error {
                // The sink's own error, not the forward pass's report that the sink hung up.
                Some(error) => Err(error),
                None => hidden,
            }
        })
    }

    /// Build a capture from plain numbers (a dump read back, a test).
    pub fn from_dense(input: Encoded, layers: usize, heads: usize, causal: bool, values: Vec<f32>) -> Result<Self> {
        let seq = input.len();
        let per_layer = heads * seq * seq;
        if values.len() != layers * per_layer {
            return Err(Error::Input(format!(
                "attention has {} values but [{layers}, {heads}, {seq}, {seq}] needs {}",
                values.len(),
                layers * per_layer
            )));
        }
        let layer_maps = values.chunks(per_layer).map(|c| Some(c.to_vec())).collect();
        Ok(Capture { input, layers, heads, seq, causal, layer_maps, kept_heads: None, value_norms: vec![None; layers] })
    }

    /// Add value norms (`[layers, heads, seq]`, e.g. read back from a file) to a capture.
    pub fn with_value_norms(mut self, norms: &[f32]) -> Result<Self> {
        let per_layer = self.heads * self.seq;
        if norms.len() != self.layers * per_layer {
            return Err(Error::Input(format!("value norms have {} values but [{}, {}, {}] needs {}", norms.len(), self.layers, self.heads, self.seq, self.layers * per_layer)));
        }
        self.value_norms = norms.chunks(per_layer).map(|c| Some(c.to_vec())).collect();
        Ok(self)
    }

    /// One layer's patterns, `[heads, query, key]`, if captured with every head.
    pub fn layer(&self, layer: usize) -> Option<&[f32]> {
        if self.kept_heads.is_some() {
            return None;
        }
        self.layer_maps.get(layer)?.as_deref()
    }

    /// One layer's ‖v_j W_O^h‖, `[heads, key]`, if `HookKind::ValueNorm` was captured.
    pub fn value_norms(&self, layer: usize) -> Option<&[f32]> {
        self.value_norms.get(layer)?.as_deref()
    }

    /// One head's map, `[query, key]` row-major, if its layer was captured.
    pub fn head(&self, layer: usize, head: usize) -> Option<&[f32]> {
        let per_head = self.seq * self.seq;
        let maps = self.layer_maps.get(layer)?.as_ref()?;
        let slot = match &self.kept_heads {
            Some(kept) => kept.iter().position(|&h| h == head)?,
            None => head,
        };
        maps.get(slot * per_head..(slot + 1) * per_head)
    }

    /// Every head of every layer, `[layers, heads, query, key]`, if all layers were captured.
    pub fn dense(&self) -> Option<Vec<f32>> {
        if self.kept_heads.is_some() {
            return None;
        }
        let mut all = Vec::with_capacity(self.layers * self.heads * self.seq * self.seq);
        for maps in &self.layer_maps {
            all.extend_from_slice(maps.as_ref()?);
        }
        Some(all)
    }

    pub fn tokens(&self) -> &[String] {
        &self.input.tokens
    }

    /// Refuse NaN/inf: such a map must be reported, never drawn or saved.
    pub fn check_finite(&self) -> Result<()> {
        let per_head = self.seq * self.seq;
        for (layer, maps) in self.layer_maps.iter().enumerate() {
            let Some(maps) = maps else { continue };
            if let Some(index) = first_non_finite(maps) {
                let slot = index / per_head;
                return Err(Error::NonFinite {
                    layer,
                    head: self.kept_heads.as_ref().map_or(slot, |kept| kept[slot]),
                    query: index % per_head / self.seq,
                    key: index % self.seq,
                    value: maps[index],
                });
            }
        }
        Ok(())
    }
}

/// Refuse token ids past the embedding table before the forward pass indexes it.
fn check_ids(info: &ArchInfo, input: &Encoded) -> Result<()> {
    if let Some((index, &id)) = input.ids.iter().enumerate().find(|(_, &id)| id as usize >= info.vocab_size) {
        return Err(Error::Input(format!(
            "token {:?} has id {id}, outside this model's vocabulary of {} ids; the tokenizer does not belong to these weights (check tokenizer.json against config.json's vocab_size)",
            input.tokens.get(index).map(String::as_str).unwrap_or("?"),
            info.vocab_size
        )));
    }
    Ok(())
}

/// One layer's maps, as [`Capture::stream`] hands them on (borrowed: the sink copies what it keeps).
pub struct LayerMaps<'a> {
    pub layer: usize,
    pub heads: usize,
    pub seq: usize,
    /// `[heads, query, key]` softmax weights.
    pub patterns: &'a [f32],
    /// `[heads, key]` ‖v_j W_O^h‖, when asked for.
    pub value_norms: Option<&'a [f32]>,
}

impl LayerMaps<'_> {
    /// One head's `[query, key]` map.
    pub fn head(&self, head: usize) -> &[f32] {
        let per_head = self.seq * self.seq;
        &self.patterns[head * per_head..(head + 1) * per_head]
    }
}

/// Where [`Capture::stream`] pushes each layer, lowest first. An error stops the forward pass.
pub trait LayerSink {
    fn layer(&mut self, maps: LayerMaps) -> Result<()>;
}

/// A layer seen in part: its pattern and (when asked for) its value norms arrive as separate hooks.
struct Pending {
    layer: usize,
    patterns: Option<Vec<f32>>,
    norms: Option<Vec<f32>>,
}

/// One layer's maps on their way from the forward pass's thread to the sink.
struct Layer {
    layer: usize,
    patterns: Vec<f32>,
    norms: Option<Vec<f32>>,
}

/// The hook sink [`Capture::stream`] gives the model: it turns hook tensors into plain
/// per-layer numbers, checks them, and sends each whole layer to the sink's thread.
struct StreamHooks {
    sender: std::sync::mpsc::SyncSender<Layer>,
    value_norms: bool,
    seq: usize,
    pending: Option<Pending>,
    /// The first error met here, reported as itself rather than as a failed forward pass.
    error: Option<Error>,
}

impl StreamHooks {
    fn receive(&mut self, point: HookPoint, values: Vec<f32>) -> Result<()> {
        let pending = match &mut self.pending {
            Some(pending) if pending.layer == point.layer => pending,
            Some(pending) => return Err(Error::Input(format!("layer {} began before layer {} was complete", point.layer, pending.layer))),
            slot => slot.insert(Pending { layer: point.layer, patterns: None, norms: None }),
        };
        match point.kind {
            HookKind::Pattern => pending.patterns = Some(values),
            _ => pending.norms = Some(values),
        }
        if pending.patterns.is_none() || (self.value_norms && pending.norms.is_none()) {
            return Ok(());
        }
        let Some(Pending { layer, patterns: Some(patterns), norms }) = self.pending.take() else { return Ok(()) };
        let seq = self.seq;
        let per_head = (seq * seq).max(1);
        if let Some(index) = first_non_finite(&patterns) {
            return Err(Error::NonFinite { layer, head: index / per_head, query: index % per_head / seq, key: index % seq, value: patterns[index] });
        }
        // A closed channel means the sink failed; its error is the one reported.
        self.sender.send(Layer { layer, patterns, norms }).map_err(|_| Error::Input("the dump stopped".into()))
    }
}

impl HookSink for StreamHooks {
    fn wants(&self, point: HookPoint) -> bool {
        self.error.is_none() && (point.kind == HookKind::Pattern || (self.value_norms && point.kind == HookKind::ValueNorm))
    }

    fn record(&mut self, point: HookPoint, value: &Tensor) -> Result<()> {
        if !self.wants(point) {
            return Ok(());
        }
        let values = value.flatten_all()?.to_vec1::<f32>()?;
        self.receive(point, values).map_err(|error| self.keep(error))
    }

    /// The pattern's own buffer, taken as it is (no copy out of a tensor).
    fn record_pattern(&mut self, layer: usize, values: Vec<f32>, _shape: (usize, usize, usize)) -> Result<()> {
        let point = HookPoint::new(layer, HookKind::Pattern);
        if !self.wants(point) {
            return Ok(());
        }
        self.receive(point, values).map_err(|error| self.keep(error))
    }
}

impl StreamHooks {
    /// Keep an error to report as itself; the forward pass gets a copy of its message.
    fn keep(&mut self, error: Error) -> Error {
        let message = error.to_string();
        self.error = Some(error);
        Error::Input(message)
    }
}

/// Where the first NaN or infinity lies: blocks first (a branch-free pass the compiler
/// vectorises), then the value within the block.
fn first_non_finite(values: &[f32]) -> Option<usize> {
    // Chunks across rayon's threads (a 512-token MiniLM capture is 75 MB to scan), the
    // first bad chunk by position, so the answer does not depend on the thread count.
    const CHUNK: usize = 1 << 16;
    let chunk = values.par_chunks(CHUNK).position_first(|chunk| chunk.chunks(256).any(|block| !block.iter().fold(true, |finite, v| finite & v.is_finite())))?;
    values[chunk * CHUNK..].iter().position(|v| !v.is_finite()).map(|index| chunk * CHUNK + index)
}

/// `layer` must name a layer of the model.
pub fn check_layer(info: &ArchInfo, layer: usize) -> Result<()> {
    if layer >= info.layers {
        return Err(Error::LayerOutOfRange { layer, count: info.layers });
    }
    Ok(())
}

/// The sink [`Capture::run_heads`] gives the model: the cache, except that patterns handed
/// over as plain numbers ([`HookSink::record_pattern`]) are kept as they are, not copied out
/// of a tensor (at 512 tokens that copy was a tenth of the forward pass).
struct KeepPatterns<'c> {
    cache: &'c mut ActivationCache,
    maps: Vec<Option<Vec<f32>>>,
}

impl HookSink for KeepPatterns<'_> {
    fn wants(&self, point: HookPoint) -> bool {
        self.cache.wants(point)
    }

    fn record(&mut self, point: HookPoint, value: &Tensor) -> Result<()> {
        self.cache.record(point, value)
    }

    fn last_layer(&self) -> Option<usize> {
        self.cache.last_layer()
    }

    fn pattern_heads(&self, layer: usize) -> Option<Vec<usize>> {
        self.cache.pattern_heads(layer)
    }

    fn record_pattern(&mut self, layer: usize, values: Vec<f32>, _shape: (usize, usize, usize)) -> Result<()> {
        if let Some(slot) = self.maps.get_mut(layer).filter(|_| self.cache.wants(HookPoint::new(layer, HookKind::Pattern))) {
            *slot = Some(values);
        }
        Ok(())
    }
}

/// `head` must name a query head of the model.
pub fn check_head(info: &ArchInfo, head: usize) -> Result<()> {
    if head >= info.heads {
        return Err(Error::HeadOutOfRange { head, count: info.heads });
    }
    Ok(())
}

/// Run a forward pass on one of rayon's threads (at once, when called from one). Every
/// parallel op of the pass (a few dozen per layer) then hands its work to the other threads
/// from inside the pool; called from outside, each op woke a thread and slept on a futex
/// until it finished, two context switches per op, which took about a tenth of a 23-token
/// MiniLM pass on one thread.
fn on_pool<R: Send>(forward: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| forward())
}

#[cfg(test)]
mod tests {
    use super::first_non_finite;

    /// The scan runs in chunks across threads but reports the first bad value by position,
    /// on any pool size, wherever it lies against the chunks.
    #[test]
    fn the_first_non_finite_value_is_found_on_any_thread_count() {
        let mut values = vec![0.5f32; 3 * (1 << 16) + 100];
        assert_eq!(first_non_finite(&values), None);
        for (first, later) in [(0, 5), ((1 << 16) - 1, 1 << 16), ((1 << 16) + 7, 2 * (1 << 16)), (3 * (1 << 16) + 99, 3 * (1 << 16) + 99)] {
            values.fill(0.5);
            values[later] = f32::INFINITY;
            values[first] = f32::NAN;
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                assert_eq!(pool.install(|| first_non_finite(&values)), Some(first), "{threads} threads");
            }
        }
    }
}
