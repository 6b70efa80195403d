//! Named hook points and the sinks that record them.
//!
//! Names follow TransformerLens (`blocks.{layer}.attn.hook_pattern`) so people
//! can carry their vocabulary over. A forward pass pushes each hook's tensor
//! into a [`HookSink`] as it is computed; the sink decides what to keep, so a
//! run returns its capture and leaves no global state behind.

use std::collections::BTreeMap;
use std::fmt;

use candle_core::Tensor;

use crate::error::Result;

/// What a hook point carries. Shapes are per input (no batch axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookKind {
    /// softmax(QK^T/sqrt(d) + mask): `[heads, query, key]`.
    Pattern,
    /// Value vectors: `[key, kv_heads, d_head]`.
    V,
    /// Each head's attention-weighted values, before the output projection: `[query, heads, d_head]`.
    Z,
    /// Each head's contribution to the residual stream (z_h W_O^h): `[query, heads, d_model]`.
    Result,
    /// ‖f_h(x_j)‖ = ‖v_j W_O^h‖ per query head and key (Kobayashi et al. 2020; value bias
    /// included, output bias not; a grouped-query head uses its KV group's values): `[heads, key]`.
    ValueNorm,
}

impl HookKind {
    pub const ALL: [HookKind; 5] = [HookKind::Pattern, HookKind::V, HookKind::Z, HookKind::Result, HookKind::ValueNorm];

    pub fn suffix(self) -> &'static str {
        match self {
            HookKind::Pattern => "hook_pattern",
            HookKind::V => "hook_v",
            HookKind::Z => "hook_z",
            HookKind::Result => "hook_result",
            HookKind::ValueNorm => "hook_value_norm",
        }
    }
}

/// One hook point: a kind at a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HookPoint {
    pub layer: usize,
    pub kind: HookKind,
}

impl HookPoint {
    pub fn new(layer: usize, kind: HookKind) -> Self {
        Self { layer, kind }
    }

    /// Parse a TransformerLens-style name such as `blocks.3.attn.hook_pattern`.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("blocks.")?;
        let (layer, suffix) = rest.split_once(".attn.")?;
        let layer = layer.parse().ok()?;
        let kind = HookKind::ALL.into_iter().find(|k| k.suffix() == suffix)?;
        Some(Self { layer, kind })
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocks.{}.attn.{}", self.layer, self.kind.suffix())
    }
}

/// Where a forward pass pushes hook values.
pub trait HookSink {
    /// Asked before a value is computed, so unwanted work can be skipped.
    fn wants(&self, point: HookPoint) -> bool;
    /// Receive one hook's value.
    fn record(&mut self, point: HookPoint, value: &Tensor) -> Result<()>;
    /// The last layer anything is wanted from; the forward pass may stop after it.
    fn last_layer(&self) -> Option<usize> {
        None
    }
    /// The heads whose `hook_pattern` the sink keeps at `layer`, or `None` for all of
    /// them: attention of long inputs then keeps only these maps ([`crate::model::attention::attend`]).
    fn pattern_heads(&self, _layer: usize) -> Option<Vec<usize>> {
        None
    }
    /// Receive `hook_pattern` as owned numbers, `[heads, query, key]` (the heads of
    /// [`HookSink::pattern_heads`]): a sink that keeps the maps takes the buffer instead of
    /// copying it out of a tensor. By default it is handed to [`HookSink::record`] as a tensor.
    fn record_pattern(&mut self, layer: usize, values: Vec<f32>, shape: (usize, usize, usize)) -> Result<()> {
        self.record(HookPoint::new(layer, HookKind::Pattern), &Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?)
    }
}

/// Which hook points to keep: kinds, at some layers (all layers when `layers` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFilter {
    pub kinds: Vec<HookKind>,
    pub layers: Option<Vec<usize>>,
}

impl HookFilter {
    /// Attention patterns of every layer (what `dump` keeps).
    pub fn all_patterns() -> Self {
        Self { kinds: vec![HookKind::Pattern], layers: None }
    }

    /// The pattern of one layer (what `show` keeps).
    pub fn pattern_of(layer: usize) -> Self {
        Self { kinds: vec![HookKind::Pattern], layers: Some(vec![layer]) }
    }

    pub fn keeps(&self, point: HookPoint) -> bool {
        self.kinds.contains(&point.kind) && self.layers.as_ref().is_none_or(|ls| ls.contains(&point.layer))
    }
}

/// A sink that keeps the filtered hook values in memory, by hook point.
#[derive(Debug)]
pub struct ActivationCache {
    filter: HookFilter,
    entries: BTreeMap<HookPoint, Tensor>,
    pattern_heads: Option<Vec<usize>>,
}

impl ActivationCache {
    pub fn new(filter: HookFilter) -> Self {
        Self { filter, entries: BTreeMap::new(), pattern_heads: None }
    }

    /// Keep the patterns of these heads only (`[heads.len(), query, key]`, in this order).
    pub fn with_pattern_heads(self, heads: Option<Vec<usize>>) -> Self {
        Self { pattern_heads: heads, ..self }
    }

    /// Take a value out of the cache (no copy stays behind).
    pub fn take(&mut self, point: HookPoint) -> Option<Tensor> {
        self.entries.remove(&point)
    }

    pub fn get(&self, point: HookPoint) -> Option<&Tensor> {
        self.entries.get(&point)
    }

    pub fn by_name(&self, name: &str) -> Option<&Tensor> {
        HookPoint::parse(name).and_then(|p| self.get(p))
    }

    pub fn points(&self) -> impl Iterator<Item = HookPoint> + '_ {
        self.entries.keys().copied()
    }

    pub fn filter(&self) -> &HookFilter {
        &self.filter
    }
}

impl HookSink for ActivationCache {
    fn wants(&self, point: HookPoint) -> bool {
        self.filter.keeps(point)
    }

    fn record(&mut self, point: HookPoint, value: &Tensor) -> Result<()> {
        if self.filter.keeps(point) {
            self.entries.insert(point, value.clone());
        }
        Ok(())
    }

    fn last_layer(&self) -> Option<usize> {
        self.filter.layers.as_ref().and_then(|ls| ls.iter().max().copied())
    }

    fn pattern_heads(&self, _layer: usize) -> Option<Vec<usize>> {
        self.pattern_heads.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in HookKind::ALL {
            let point = HookPoint::new(7, kind);
            assert_eq!(HookPoint::parse(&point.to_string()), Some(point));
        }
        assert_eq!(HookPoint::new(5, HookKind::Pattern).to_string(), "blocks.5.attn.hook_pattern");
        assert_eq!(HookPoint::parse("blocks.x.attn.hook_pattern"), None);
        assert_eq!(HookPoint::parse("blocks.1.mlp.hook_post"), None);
    }

    #[test]
    fn filter_keeps_only_what_it_names() {
        let filter = HookFilter::pattern_of(2);
        assert!(filter.keeps(HookPoint::new(2, HookKind::Pattern)));
        assert!(!filter.keeps(HookPoint::new(1, HookKind::Pattern)));
        assert!(!filter.keeps(HookPoint::new(2, HookKind::V)));
        assert!(HookFilter::all_patterns().keeps(HookPoint::new(40, HookKind::Pattern)));
    }
}
