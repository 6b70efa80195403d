//! Hook values checked as numbers, not only as shapes: each head's
//! `hook_result` is its share of the attention block's output projection.

use std::path::Path;

use attnmap::hooks::{ActivationCache, HookFilter, HookKind, HookPoint};

use crate::helpers::{fixtures, loaded, minilm_dir};

/// Where each family keeps its attention output projection (weight and bias), and
/// whether the weight is stored `[input, output]` (GPT-2's Conv1D) rather than `[output, input]`.
fn output_projection(model_type: &str, layer: usize) -> (String, bool) {
    match model_type {
        "bert" | "roberta" | "xlm-roberta" | "camembert" => (format!("encoder.layer.{layer}.attention.output.dense"), false),
        "distilbert" => (format!("transformer.layer.{layer}.attention.out_lin"), false),
        "gpt2" => (format!("h.{layer}.attn.c_proj"), true),
        "gpt_neox" => (format!("layers.{layer}.attention.dense"), false),
        "llama" | "mistral" | "qwen2" => (format!("layers.{layer}.self_attn.o_proj"), false),
        other => panic!("no output projection known for {other}"),
    }
}

/// The tensor whose name ends with `.{suffix}` (prefixes such as `bert.` or `transformer.` vary).
fn tensor(tensors: &std::collections::HashMap<String, candle_core::Tensor>, suffix: &str) -> Option<candle_core::Tensor> {
    let mut found = tensors.iter().filter(|(name, _)| name.ends_with(&format!(".{suffix}")) || *name == suffix);
    let first = found.next().map(|(_, t)| t.clone());
    assert!(found.next().is_none(), "{suffix} is ambiguous");
    first
}

/// For every layer: each head's hook_result equals z_h · W_O[:, h]ᵀ with W_O read from the
/// weight file (so a head's slice cannot be swapped or misplaced), and the heads' results plus
/// the output bias equal the attention block's output, merge(z) · W_Oᵀ + b.
///
/// Bound: every figure is an f32 dot product of at most K = heads·d_head terms followed by at
/// most `heads` additions, so its error is at most (K + heads + 2)·u·Σ|terms| (u = 2^-24,
/// Higham's γ_n); the references are computed in f64. Twice that is allowed, per element.
fn check_results(dir: &Path) {
    let loaded = loaded(dir);
    let info = loaded.model.info().clone();
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let input = loaded.tokenizer.encode("the cat sat on the mat because it was warm", None).unwrap();
    let mut cache = ActivationCache::new(HookFilter { kinds: vec![HookKind::Z, HookKind::Result], layers: None });
    loaded.model.forward(&input, &mut cache).unwrap();
    let (heads, d, hidden) = (info.heads, info.head_dim, info.hidden);
    let width = heads * d;
    let u = f64::from(f32::EPSILON) / 2.0;
    for layer in 0..info.layers {
        let (name, stored_in_out) = output_projection(&loaded.model_type, layer);
        let weight = tensor(&tensors, &format!("{name}.weight")).unwrap_or_else(|| panic!("{}: no {name}.weight", dir.display()));
        let weight = if stored_in_out { weight.t().unwrap() } else { weight };
        let weight: Vec<Vec<f32>> = weight.to_dtype(candle_core::DType::F32).unwrap().to_vec2().unwrap();
        assert_eq!((weight.len(), weight[0].len()), (hidden, width), "{name}: [d_model, heads * d_head]");
        let bias: Vec<f32> = match tensor(&tensors, &format!("{name}.bias")) {
            Some(b) => b.to_dtype(candle_core::DType::F32).unwrap().to_vec1().unwrap(),
            None => vec![0.0; hidden],
        };
        let z: Vec<Vec<Vec<f32>>> = cache.get(HookPoint::new(layer, HookKind::Z)).unwrap().to_vec3().unwrap();
        let result: Vec<Vec<Vec<f32>>> = cache.get(HookPoint::new(layer, HookKind::Result)).unwrap().to_vec3().unwrap();
        for query in 0..input.len() {
            for out in 0..hidden {
                let (mut block, mut block_magnitude, mut heads_sum) = (f64::from(bias[out]), f64::from(bias[out].abs()), f64::from(bias[out]));
                for head in 0..heads {
                    let (mut share, mut magnitude) = (0.0f64, 0.0f64);
                    for i in 0..d {
                        let term = f64::from(z[query][head][i]) * f64::from(weight[out][head * d + i]);
                        share += term;
                        magnitude += term.abs();
                    }
                    let recorded = f64::from(result[query][head][out]);
                    let bound = 2.0 * (d as f64 + 2.0) * u * magnitude + f64::from(f32::MIN_POSITIVE);
                    assert!(
                        (recorded - share).abs() <= bound,
                        "{} L{layer} head {head} query {query} out {out}: hook_result {recorded} but z_h W_O^h = {share} (bound {bound:e})",
                        dir.display()
                    );
                    block += share;
                    block_magnitude += magnitude;
                    heads_sum += recorded;
                }
                let bound = 2.0 * (width as f64 + heads as f64 + 2.0) * u * block_magnitude + f64::from(f32::MIN_POSITIVE);
                assert!(
                    (heads_sum - block).abs() <= bound,
                    "{} L{layer} query {query} out {out}: heads' results + bias = {heads_sum} but the block output is {block} (bound {bound:e})",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn hook_result_adds_up_to_the_attention_output_for_every_family() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-distilbert", "tiny-gpt2", "tiny-gpt-neox", "tiny-llama", "tiny-mistral", "tiny-qwen2"] {
        check_results(&fixtures().join(name));
    }
    check_results(&minilm_dir());
}
