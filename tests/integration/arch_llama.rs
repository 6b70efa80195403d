//! The LLaMA family (llama, mistral, qwen2) and GGUF files: maps equal
//! transformers', GGUF loads like the folder it was converted from, and bad
//! files end in one clear line.
//!
//! References come from scripts/fixtures_llama.py (tests/fixtures/cases-llama.json).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use attnmap::capture::Capture;
use attnmap::hooks::{ActivationCache, HookFilter, HookKind, HookPoint};
use attnmap::model::{self, LoadOptions};
use attnmap::source::{self, HubEnv};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::faithfulness::{check_model, check_model_within};
use crate::helpers::{assert_clean_failure, attnmap, dumps_across_thread_counts, fixtures, loaded, repo_root, stderr};

const SMOLLM2: &str = ".models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn smollm2() -> PathBuf {
    let path = repo_root().join(SMOLLM2);
    assert!(path.is_file(), "{} is missing: run scripts/fetch-models.sh", path.display());
    path
}

#[test]
fn tiny_llama_matches_transformers() {
    check_model("tiny-llama");
}

#[test]
fn tiny_mistral_matches_transformers_with_its_sliding_window() {
    check_model("tiny-mistral");
}

#[test]
fn tiny_qwen2_matches_transformers_with_full_and_sliding_layers() {
    check_model("tiny-qwen2");
}

/// The real SmolLM2 GGUF (30 layers, GQA 9/3, dequantized Q4_1) at 13, 134 and 600 tokens.
/// Each weight lands within ~5e-6 of transformers' (f32 matmuls and reductions summed in
/// another order, over 30 layers), but not always within 1e-5 on every CPU: the rounding of
/// 30 layers of f32 kernels depends on the SIMD path (AVX2 and AVX-512 differ). So this model
/// holds 1e-4 per weight, and the column sums and row projections the bounds that follow from
/// it (see `check_case_within`); a real error (q/k rows left permuted, a wrong RoPE base, a
/// digit split differently) moves maps by 1e-2 or more.
#[test]
fn smollm2_gguf_matches_transformers() {
    check_model_within("smollm2", 1e-4);
}

/// A llama folder's own `model.`-less names and the `model.`-prefixed ones both load
/// (tiny-qwen2 is saved without the prefix, tiny-llama with it).
#[test]
fn weights_load_with_or_without_the_model_prefix() {
    let names = |dir: &str| candle_core::safetensors::load(fixtures().join(dir).join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(names("tiny-qwen2").contains_key("embed_tokens.weight"));
    assert!(names("tiny-llama").contains_key("model.embed_tokens.weight"));
    for dir in ["tiny-qwen2", "tiny-llama"] {
        assert_eq!(loaded(&fixtures().join(dir)).model.info().family, if dir == "tiny-qwen2" { "qwen2" } else { "llama" });
    }
}

/// Grouped-query attention: hook_v holds the KV heads, and z is each query head's pattern
/// times the values of the KV head it shares.
#[test]
fn hooks_of_a_gqa_model_are_consistent() {
    let loaded = loaded(&fixtures().join("tiny-llama"));
    let input = loaded.tokenizer.encode("the cat sat on the mat", None).unwrap();
    let info = loaded.model.info().clone();
    assert_eq!((info.heads, info.kv_heads, info.head_dim, info.hidden), (4, 2, 16, 32));
    let mut cache = ActivationCache::new(HookFilter { kinds: HookKind::ALL.to_vec(), layers: None });
    loaded.model.forward(&input, &mut cache).unwrap();
    let seq = input.len();
    let pattern = cache.get(HookPoint::new(1, HookKind::Pattern)).unwrap();
    let v = cache.get(HookPoint::new(1, HookKind::V)).unwrap();
    let z = cache.get(HookPoint::new(1, HookKind::Z)).unwrap();
    let result = cache.get(HookPoint::new(1, HookKind::Result)).unwrap();
    assert_eq!(v.dims(), &[seq, info.kv_heads, info.head_dim]);
    assert_eq!(z.dims(), &[seq, info.heads, info.head_dim]);
    assert_eq!(result.dims(), &[seq, info.heads, info.hidden]);
    let group = info.heads / info.kv_heads;
    for head in 0..info.heads {
        let values = v.narrow(1, head / group, 1).unwrap().squeeze(1).unwrap();
        let expected = pattern.get(head).unwrap().matmul(&values).unwrap();
        let got = z.narrow(1, head, 1).unwrap().squeeze(1).unwrap();
        let diff: f32 = (expected - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(diff < 1e-5, "head {head}: z != pattern @ v of KV head {} ({diff:e})", head / group);
    }
}

/// `show` stops after the asked layer; the map must equal the full run's.
#[test]
fn one_layer_capture_of_a_decoder_equals_full_capture() {
    let loaded = loaded(&fixtures().join("tiny-mistral"));
    let input = loaded.tokenizer.encode("Early exit must not change layer zero of a decoder.", None).unwrap();
    let full = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture;
    let one = Capture::run(loaded.model.as_ref(), &input, Some(vec![0]), &[]).unwrap().capture;
    assert_eq!(one.head(0, 3).unwrap(), full.head(0, 3).unwrap());
}

#[test]
fn info_describes_the_gguf() {
    let model = smollm2();
    let output = attnmap(&["info", "--model", model.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("layers         30 (--layer 0-29)"), "{text}");
    assert!(text.contains("query heads    9 per layer"), "{text}");
    assert!(text.contains("kv heads       3"), "{text}");
    assert!(text.contains("architecture   llama (decoder, causal attention)"), "{text}");
    assert!(text.contains("loaded from    ") && text.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{text}");
    assert!(text.contains("gguf, f32, dequantized from") && text.contains("Q4_1 x210"), "{text}");
    assert!(stderr(&output).contains("from GGUF file"), "{}", stderr(&output));
}

/// The SmolLM2 tokenizer rebuilt from GGUF metadata splits digits one by one (the original
/// tokenizer.json and llama.cpp's "smollm" pre-tokenizer), even after runs of whitespace, where
/// transformers' own GGUF tokenizer (plain GPT-2 splitting) gives other ids.
#[test]
fn smollm2_tokenizer_splits_digits_like_the_original() {
    let loaded = loaded(&smollm2());
    let tokens = |text: &str| loaded.tokenizer.encode(text, None).unwrap().tokens;
    assert_eq!(tokens("in 2019"), ["in", "Ġ", "2", "0", "1", "9"]);
    // GPT-2 splitting would give "a", "Ġ", "Ġ", "1" and "x", "Ċ", "Ċ", "2".
    assert_eq!(tokens("a  1"), ["a", "ĠĠ", "1"]);
    assert_eq!(tokens("x\n\n2"), ["x", "ĊĊ", "2"]);
    let chat = loaded.tokenizer.encode("<|im_start|>user\nHi<|im_end|>", None).unwrap();
    assert_eq!(chat.ids, [1, 4093, 198, 26843, 2], "control tokens are matched whole; no BOS is added");
}

/// `dump` of a decoder is byte-identical run to run and whatever the thread count, and its
/// manifest says what was loaded.
#[test]
fn gguf_dump_is_byte_identical_across_runs_and_thread_counts() {
    let (_dir, dumps) = dumps_across_thread_counts(smollm2().to_str().unwrap(), "In 2019, 3 clocks struck 12 at once.");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dumps[0].join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["architecture"], "llama");
    assert_eq!(manifest["weights_format"], "gguf");
    assert_eq!(manifest["weights_sha256"], SMOLLM2_SHA256);
    assert_eq!(manifest["causal"], true);
    assert_eq!((manifest["layers"].as_u64(), manifest["heads"].as_u64(), manifest["kv_heads"].as_u64()), (Some(30), Some(9), Some(3)));
    assert!(manifest["source"].as_str().unwrap().contains("GGUF file"));
    assert!(dumps[0].join("heads/L29_H08.png").is_file());
}

/// `--quantized` runs candle's quantized matmuls: the maps stay distributions with a causal
/// mask, close to but not equal to the dequantized ones.
#[test]
fn quantized_matmuls_differ_slightly() {
    let env = HubEnv::from_env().unwrap();
    let files = source::resolve(smollm2().to_str().unwrap(), "main", &env).unwrap();
    let quantized = model::load_with(&files, &LoadOptions { quantized: true }).unwrap();
    let dense = loaded(&smollm2());
    let input = dense.tokenizer.encode("The WhirlyGigs arrived broken on 3 May.", None).unwrap();
    let a = Capture::run(dense.model.as_ref(), &input, Some(vec![5]), &[]).unwrap().capture;
    let b = Capture::run(quantized.model.as_ref(), &input, Some(vec![5]), &[]).unwrap().capture;
    let seq = input.len();
    let mut worst = 0f32;
    for head in 0..9 {
        let (x, y) = (a.head(5, head).unwrap(), b.head(5, head).unwrap());
        for (query, row) in y.chunks(seq).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(row[query + 1..].iter().all(|&v| v == 0.0));
        }
        worst = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(worst, f32::max);
    }
    assert!(worst > 0.0 && worst < 0.2, "quantized maps differ by {worst}");
    assert!(quantized.precision.contains("quantized"), "{}", quantized.precision);
}

#[test]
fn quantized_is_refused_for_safetensors_models() {
    let model = fixtures().join("tiny-llama");
    let output = attnmap(&["info", "--model", model.to_str().unwrap(), "--quantized"], &[]);
    assert_clean_failure(&output, "--quantized needs a .gguf model");
}

/// Copy a fixture folder into a temp dir, let `spoil` edit config.json, and ask for `info`.
fn info_of_edited_copy(name: &str, spoil: impl FnOnce(String) -> String) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(name);
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(file), model.join(file)).unwrap();
    }
    let config = spoil(std::fs::read_to_string(model.join("config.json")).unwrap());
    std::fs::write(model.join("config.json"), config).unwrap();
    attnmap(&["info", "--model", model.to_str().unwrap()], &[])
}

#[test]
fn bad_llama_configs_end_in_one_line() {
    let output = info_of_edited_copy("tiny-llama", |c| c.replace("\"model_type\": \"llama\"", "\"model_type\": \"gemma3\""));
    assert_clean_failure(&output, "model_type \"gemma3\" is not supported");
    assert!(stderr(&output).contains("llama, mistral, qwen2"), "{}", stderr(&output));
    let output = info_of_edited_copy("tiny-llama", |c| c.replace("\"llama3\"", "\"yarn\""));
    assert_clean_failure(&output, "RoPE scaling type \"yarn\"");
    let output = info_of_edited_copy("tiny-mistral", |c| c.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"));
    assert_clean_failure(&output, "multiple of the KV heads");
    let output = info_of_edited_copy("tiny-qwen2", |c| c.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
    assert_clean_failure(&output, "layer_types");
}

// ---------------------------------------------------------------------------------------------
// Synthetic GGUF files: a tiny random llama written twice, as a Hugging Face folder and as a
// GGUF (q/k rows permuted as llama.cpp's converter does, Q8_0 blocks), so loading the GGUF can
// be checked against loading the folder, and broken files can be made cheaply.

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;
const FFN: usize = 64;
const LAYERS: usize = 2;
const VOCAB: usize = 256;

/// GPT-2's bytes_to_unicode: a byte-level vocabulary of the 256 single bytes.
fn byte_tokens() -> Vec<String> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            let c = if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            };
            c.to_string()
        })
        .collect()
}

/// llama.cpp's LlamaModel.permute (convert_hf_to_gguf.py): HF rows to GGUF rows.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((rows, cols)).unwrap()
}

/// Random weights in Hugging Face names (without `model.`), already rounded through Q8_0 so
/// the folder and the GGUF hold exactly the same numbers.
fn synthetic_weights() -> Vec<(String, Tensor)> {
    let device = Device::Cpu;
    let mut seed = 0u64;
    let mut random = |shape: (usize, usize), scale: f32| {
        seed += 1;
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|i| {
                // A fixed hash, not an RNG crate: the test must not depend on one.
                let x = ((i as u64 + 1) * 2654435761 + seed * 40503) % 1_000_003;
                (x as f32 / 1_000_003.0 - 0.5) * 2.0 * scale
            })
            .collect();
        let tensor = Tensor::from_vec(values, shape, &device).unwrap();
        QTensor::quantize(&tensor, GgmlDType::Q8_0).unwrap().dequantize(&device).unwrap()
    };
    let mut weights = vec![("embed_tokens.weight".to_string(), random((VOCAB, HIDDEN), 1.0))];
    for layer in 0..LAYERS {
        let name = |n: &str| format!("layers.{layer}.{n}");
        weights.push((name("self_attn.q_proj.weight"), random((HEADS * HEAD_DIM, HIDDEN), 0.6)));
        weights.push((name("self_attn.k_proj.weight"), random((KV_HEADS * HEAD_DIM, HIDDEN), 0.6)));
        weights.push((name("self_attn.v_proj.weight"), random((KV_HEADS * HEAD_DIM, HIDDEN), 0.4)));
        weights.push((name("self_attn.o_proj.weight"), random((HIDDEN, HEADS * HEAD_DIM), 0.4)));
        weights.push((name("mlp.gate_proj.weight"), random((FFN, HIDDEN), 0.4)));
        weights.push((name("mlp.up_proj.weight"), random((FFN, HIDDEN), 0.4)));
        weights.push((name("mlp.down_proj.weight"), random((HIDDEN, FFN), 0.4)));
        let ones = |n: &str| (name(n), (Tensor::ones(HIDDEN, candle_core::DType::F32, &device).unwrap() * (1.0 + 0.1 * layer as f64)).unwrap());
        weights.push(ones("input_layernorm.weight"));
        weights.push(ones("post_attention_layernorm.weight"));
    }
    weights.push(("norm.weight".to_string(), Tensor::ones(HIDDEN, candle_core::DType::F32, &device).unwrap()));
    weights
}

/// The GGUF name of a Hugging Face weight name.
fn gguf_name(hf: &str) -> String {
    let renames = [
        ("embed_tokens", "token_embd"),
        ("norm.weight", "output_norm.weight"),
        ("layers.", "blk."),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
    ];
    if hf.starts_with("layers.") {
        let mut name = hf.to_string();
        for (from, to) in &renames[2..] {
            name = name.replace(from, to);
        }
        return name;
    }
    renames.iter().find(|(from, _)| hf.starts_with(from)).map(|(from, to)| hf.replacen(from, to, 1)).unwrap()
}

/// Write the synthetic model as a GGUF; `edit` may change the metadata first.
fn write_gguf(path: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) {
    let tokens = byte_tokens();
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), Value::U32(LAYERS as u32)),
        ("llama.context_length".into(), Value::U32(64)),
        ("llama.embedding_length".into(), Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), Value::U32(FFN as u32)),
        ("llama.attention.head_count".into(), Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv".into(), Value::U32(KV_HEADS as u32)),
        ("llama.rope.freq_base".into(), Value::F32(10000.0)),
        ("llama.rope.dimension_count".into(), Value::U32(HEAD_DIM as u32)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect())),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    edit(&mut metadata);
    let tensors: Vec<(String, QTensor)> = synthetic_weights()
        .into_iter()
        .map(|(hf, w)| {
            let stored = if hf.contains("q_proj") {
                permute(&w, HEADS)
            } else if hf.contains("k_proj") {
                permute(&w, KV_HEADS)
            } else {
                w
            };
            let dtype = if stored.rank() == 2 { GgmlDType::Q8_0 } else { GgmlDType::F32 };
            (gguf_name(&hf), QTensor::quantize(&stored, dtype).unwrap())
        })
        .collect();
    let mut file = std::fs::File::create(path).unwrap();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

/// The same model as a Hugging Face llama folder (weights under `model.`).
fn write_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let tensors: HashMap<String, Tensor> = synthetic_weights().into_iter().map(|(k, v)| (format!("model.{k}"), v)).collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    // Any tokenizer.json loads; the test feeds ids directly.
    std::fs::copy(fixtures().join("tiny-qwen2/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

fn load(path: &Path, quantized: bool) -> model::Loaded {
    let env = HubEnv::from_env().unwrap();
    let files = source::resolve(path.to_str().unwrap(), "main", &env).unwrap();
    model::load_with(&files, &LoadOptions { quantized }).unwrap()
}

/// Un-permuting q/k and renaming make a GGUF load exactly like the folder it came from.
#[test]
fn gguf_loads_like_the_folder_it_was_converted_from() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    write_gguf(&gguf, |_| {});
    write_folder(&dir.path().join("folder"));
    let from_gguf = load(&gguf, false);
    let from_folder = load(&dir.path().join("folder"), false);
    assert_eq!(from_gguf.model.info(), from_folder.model.info());
    let text = "digits 0123 and  bytes";
    let input = from_gguf.tokenizer.encode(text, None).unwrap();
    // A vocabulary of single bytes with no merges: one id per byte, digits alone.
    assert_eq!(input.ids, text.bytes().map(u32::from).collect::<Vec<_>>());
    let a = Capture::run(from_gguf.model.as_ref(), &input, None, &[]).unwrap();
    let b = Capture::run(from_folder.model.as_ref(), &input, None, &[]).unwrap();
    assert_eq!(a.capture.dense().unwrap(), b.capture.dense().unwrap(), "maps differ between the GGUF and the folder");
    let peak = a.capture.dense().unwrap().iter().copied().fold(0f32, f32::max);
    assert!(peak > 0.3, "the synthetic maps are too flat to show a permutation error ({peak})");

    // --quantized: Q8_0 blocks multiply directly, the maps move a little.
    let quantized = load(&gguf, true);
    let c = Capture::run(quantized.model.as_ref(), &input, None, &[]).unwrap();
    let worst = a.capture.dense().unwrap().iter().zip(c.capture.dense().unwrap()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 0.2, "quantized maps differ by {worst}");
}

#[test]
fn gguf_with_a_missing_key_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("no-eps.gguf");
    write_gguf(&gguf, |m| m.retain(|(k, _)| k != "llama.attention.layer_norm_rms_epsilon"));
    let output = attnmap(&["info", "--model", gguf.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "has no metadata key llama.attention.layer_norm_rms_epsilon");
}

#[test]
fn gguf_of_another_architecture_lists_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("gemma.gguf");
    write_gguf(&gguf, |m| m[0].1 = Value::String("gemma3".into()));
    let output = attnmap(&["info", "--model", gguf.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "general.architecture \"gemma3\"");
    assert!(stderr(&output).contains("supported GGUF architectures: llama"), "{}", stderr(&output));
}

#[test]
fn gguf_with_an_unknown_pre_tokenizer_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("pre.gguf");
    write_gguf(&gguf, |m| {
        for (key, value) in m.iter_mut() {
            if key == "tokenizer.ggml.pre" {
                *value = Value::String("deepseek-coder".into());
            }
        }
    });
    // info reads only what it prints, so the tokenizer is first read by show.
    let output = attnmap(&["show", "hi", "-l", "0", "-H", "0", "--model", gguf.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "tokenizer.ggml.pre \"deepseek-coder\" is not supported");
}

#[test]
fn truncated_or_corrupt_gguf_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(smollm2()).unwrap();
    // Metadata complete, tensor data cut short: a typical interrupted download.
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &real[..4_000_000]).unwrap();
    let output = attnmap(&["info", "--model", cut.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "is truncated");
    // Cut inside the metadata.
    let cut = dir.path().join("header.gguf");
    std::fs::write(&cut, &real[..50_000]).unwrap();
    let output = attnmap(&["info", "--model", cut.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "is not a valid GGUF file");
    // Not a GGUF at all.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    let output = attnmap(&["show", "hi", "-l", "0", "-H", "0", "--model", junk.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "is not a valid GGUF file");
    // An empty file.
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let output = attnmap(&["info", "--model", empty.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "empty.gguf");
}

#[test]
fn a_folder_holding_a_gguf_points_at_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_gguf(&dir.path().join("tiny.gguf"), |_| {});
    let output = attnmap(&["info", "--model", dir.path().to_str().unwrap()], &[]);
    assert_clean_failure(&output, "tiny.gguf; pass that file as --model");
}

/// A long context's dump is streamed, so memory no longer limits it, but the disk does: with
/// less free space than its attention.npy alone (270 maps of 4001 x 4001 f32: 16.1 GiB), it is
/// refused before any work, naming the size needed and the space free.
#[test]
fn a_dump_too_large_for_the_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = "The year 2019 was long. ".repeat(400);
    let out = dir.path().join("dump");
    // ATTNMAP_FREE_BYTES stands in for statvfs's answer (no test can fill a disk).
    let output = attnmap(&["dump", &text, "--out", out.to_str().unwrap(), "--model", smollm2().to_str().unwrap()], &[("ATTNMAP_FREE_BYTES", "16000000000")]);
    assert_clean_failure(&output, "has 14.9 GiB free");
    let err = stderr(&output);
    let needed: f64 = err.split("needs about ").nth(1).and_then(|rest| rest.split(" GiB").next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no size in {err}"));
    let array = (270.0 * 4001.0 * 4001.0 * 4.0) / f64::from(1u32 << 30);
    assert!(needed >= array, "needs {needed} GiB, below attention.npy's {array:.1} GiB");
    assert!(!out.exists());
}

/// candle's GGUF reader panics on `general.alignment = 0`; attnmap must still
/// end in one clear line and exit 2.
#[test]
fn gguf_with_zero_alignment_is_an_error_not_a_panic() {
    fn string(text: &str) -> Vec<u8> {
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes()); // version
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensors
    bytes.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    bytes.extend_from_slice(&string("general.alignment"));
    bytes.extend_from_slice(&4u32.to_le_bytes()); // u32
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let output = crate::helpers::attnmap(&["info", "--model", path.to_str().unwrap()], &[]);
    crate::helpers::assert_clean_failure(&output, "is not a valid GGUF file");
}
