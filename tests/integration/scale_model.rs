//! The scale test's model: a random BERT of 96 layers x 96 heads whose 62 MB of
//! weights are regenerated here instead of committed.
//!
//! scripts/fixtures_scale.py defines the weights and made the references from them;
//! this file implements the same generator bit for bit (integer splitmix64 streams
//! scaled by powers of two, exact in f64, rounded once to f32) and proves it with the
//! sha256 the script recorded in tests/fixtures/scale/weights.json. Kept free of the
//! test helpers so that examples/scale_model.rs (used by benches/scale.sh) shares it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

/// The committed part: config.json, tokenizer.json, weights.json, reference.safetensors, case.json.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scale")
}

/// The text the references were made on (128 tokens with [CLS] and [SEP]).
pub fn text() -> String {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("case.json")).unwrap()).unwrap();
    case["text"].as_str().unwrap().to_string()
}

/// One tensor of the recipe: value = offset + amplitude * u, u uniform on [-1, 1) in 2^-23 steps.
#[derive(Debug, Clone, serde::Deserialize)]
struct Recipe {
    name: String,
    shape: Vec<usize>,
    offset: f64,
    amplitude: f64,
}

#[derive(Debug, serde::Deserialize)]
struct Spec {
    seed: u64,
    layers: usize,
    tensors: Vec<Recipe>,
    per_layer: Vec<Recipe>,
    sha256: String,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3))
}

/// splitmix64's output function (Steele, Lea and Flood 2014), as Vigna's reference code has it.
fn splitmix64(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The values of one tensor, as `generate` in scripts/fixtures_scale.py makes them.
fn generate(recipe: &Recipe, seed: u64) -> Vec<f32> {
    let key = fnv1a64(&recipe.name) ^ seed;
    let count: usize = recipe.shape.iter().product();
    (0..count as u64)
        .map(|i| {
            let x = splitmix64(key.wrapping_add((i + 1).wrapping_mul(GOLDEN)));
            // 24-bit integers times a power of two: exact in f64, as in numpy.
            let unit = (x >> 40) as f64 * 2f64.powi(-23) - 1.0;
            (recipe.offset + recipe.amplitude * unit) as f32
        })
        .collect()
}

/// Every tensor of the model by name, and their sha256 as the script defines it.
fn tensors() -> (Vec<(String, Vec<usize>, Vec<f32>)>, String, String) {
    let text = std::fs::read_to_string(fixture_dir().join("weights.json")).unwrap();
    let spec: Spec = serde_json::from_str(&text).unwrap();
    let mut recipes = spec.tensors.clone();
    for layer in 0..spec.layers {
        recipes.extend(spec.per_layer.iter().map(|r| Recipe { name: r.name.replace("{layer}", &layer.to_string()), ..r.clone() }));
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = recipes.iter().map(|r| (r.name.clone(), r.shape.clone(), generate(r, spec.seed))).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (name, shape, values) in &tensors {
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
        for &dim in shape {
            hasher.update((dim as u64).to_le_bytes());
        }
        for value in values {
            hasher.update(value.to_le_bytes());
        }
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (tensors, digest, spec.sha256)
}

/// Write the model folder (config.json, tokenizer.json, model.safetensors) into `dir`,
/// which must exist. Panics if the regenerated weights are not the ones the script
/// made the references from.
pub fn write(dir: &Path) {
    let (tensors, digest, expected) = tensors();
    assert_eq!(digest, expected, "the regenerated weights differ from those of scripts/fixtures_scale.py (sha256)");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture_dir().join(file), dir.join(file)).unwrap();
    }
    let tensors: HashMap<String, Tensor> =
        tensors.into_iter().map(|(name, shape, values)| (name, Tensor::from_vec(values, shape, &Device::Cpu).unwrap())).collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}
