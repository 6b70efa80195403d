//! GPT-2, DistilBERT, RoBERTa, XLM-RoBERTa and GPT-NeoX against transformers,
//! on the tiny random models of scripts/fixtures_gpt.py (tests/fixtures/cases-gpt.json).
//!
//! Every map of every head must be within 1e-5 of transformers' eager attention:
//! transformers' own f32 maps sit within 2e-6 of its f64 ones on these models, so
//! 1e-5 is reachable in f32 without any allowance for operation order.

use std::path::{Path, PathBuf};

use attnmap::capture::Capture;
use attnmap::hooks::{ActivationCache, HookFilter, HookKind, HookPoint};

use crate::faithfulness::check_model;
use crate::helpers::{assert_clean_failure, cases_of, fixtures, loaded, run_broken_model};

/// Every fixture model of this file, with its model_type.
const MODELS: &[(&str, &str)] = &[
    ("tiny-gpt2", "gpt2"),
    ("tiny-gpt2-scaled", "gpt2"),
    ("tiny-distilbert", "distilbert"),
    ("tiny-roberta", "roberta"),
    ("tiny-xlm-roberta", "xlm-roberta"),
    ("tiny-gpt-neox", "gpt_neox"),
    ("tiny-gpt-neox-sequential", "gpt_neox"),
];

fn model_dir(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// GPT-2 as released: gelu_new, Conv1D weights under `transformer.` (GPT2LMHeadModel).
#[test]
fn tiny_gpt2_matches_transformers() {
    check_model("tiny-gpt2");
}

/// scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn, erf gelu, default n_inner, no prefix.
#[test]
fn tiny_gpt2_scaled_matches_transformers() {
    check_model("tiny-gpt2-scaled");
}

/// Saved as DistilBertForMaskedLM (`distilbert.` prefix); the pair case has no segment ids.
#[test]
fn tiny_distilbert_matches_transformers() {
    check_model("tiny-distilbert");
}

/// Saved as RobertaForMaskedLM (`roberta.` prefix); a pair, a longest-first truncated pair,
/// and a literal `<pad>` in the text (position pad_token_id, not counted).
#[test]
fn tiny_roberta_matches_transformers() {
    check_model("tiny-roberta");
}

/// A Unigram (SentencePiece-style) tokenizer with XLM-R's <s> </s></s> pair template.
#[test]
fn tiny_xlm_roberta_matches_transformers() {
    check_model("tiny-xlm-roberta");
}

/// Pythia-like: rotary_pct 0.25, parallel residual, attention bias, legacy config keys,
/// saved as GPTNeoXForCausalLM (`gpt_neox.` prefix).
#[test]
fn tiny_gpt_neox_matches_transformers() {
    check_model("tiny-gpt-neox");
}

/// Sequential residual, full rotary with rope_parameters (theta 500), no attention bias.
#[test]
fn tiny_gpt_neox_sequential_matches_transformers() {
    check_model("tiny-gpt-neox-sequential");
}

/// RoBERTa counts positions from pad_token_id + 1, so max_position_embeddings 34 with
/// pad_token_id 1 reads 32 tokens (roberta-base: 514 -> 512), not 34.
#[test]
fn roberta_truncates_at_max_positions_minus_padding() {
    for name in ["tiny-roberta", "tiny-xlm-roberta"] {
        let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model_dir(name).join("config.json")).unwrap()).unwrap();
        assert_eq!((config["max_position_embeddings"].as_u64(), config["pad_token_id"].as_u64()), (Some(34), Some(1)));
        let loaded = loaded(&model_dir(name));
        assert_eq!(loaded.tokenizer.max_len(), 32, "{name}");
        assert_eq!(loaded.model.info().max_positions, 32, "{name}");
        let long = "the cat sat on the mat and the dog ran to the red house ".repeat(8);
        let input = loaded.tokenizer.encode(&long, None).unwrap();
        assert_eq!(input.len(), 32, "{name}");
        assert!(input.dropped > 0);
        // The last token sits at position 33, the last row of the position table.
        let run = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap();
        assert_eq!(run.capture.seq, 32);
        let truncated: Vec<_> = cases_of(name).into_iter().filter(|c| c.truncated_from.is_some()).collect();
        assert!(!truncated.is_empty() && truncated.iter().all(|c| c.seq_len == 32), "{name}: transformers truncates at 32 too");
    }
}

/// transformers' CamembertModel is RobertaModel renamed: the same folder read as camembert
/// gives the same maps as read as xlm-roberta.
#[test]
fn camembert_is_read_as_roberta() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir("tiny-xlm-roberta").join(file), dir.path().join(file)).unwrap();
    }
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap().replace("\"xlm-roberta\"", "\"camembert\"");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let camembert = loaded(dir.path());
    let xlmr = loaded(&model_dir("tiny-xlm-roberta"));
    assert_eq!(camembert.model_type, "camembert");
    let text = "Where did the cat sleep?";
    let ours = Capture::run(camembert.model.as_ref(), &camembert.tokenizer.encode(text, None).unwrap(), None, &[]).unwrap();
    let theirs = Capture::run(xlmr.model.as_ref(), &xlmr.tokenizer.encode(text, None).unwrap(), None, &[]).unwrap();
    assert_eq!(ours.capture.dense().unwrap(), theirs.capture.dense().unwrap());
}

/// hook_pattern, hook_v, hook_z and hook_result have the documented shapes for every
/// architecture, z is pattern x values, and stopping after layer 0 keeps layer 0's maps.
#[test]
fn hooks_work_for_every_new_architecture() {
    for (name, _) in MODELS {
        let loaded = loaded(&model_dir(name));
        let info = loaded.model.info().clone();
        let input = loaded.tokenizer.encode("the cat sat on the mat", None).unwrap();
        let seq = input.len();
        let mut cache = ActivationCache::new(HookFilter { kinds: HookKind::ALL.to_vec(), layers: None });
        loaded.model.forward(&input, &mut cache).unwrap();
        for layer in 0..info.layers {
            let pattern = cache.get(HookPoint::new(layer, HookKind::Pattern)).unwrap();
            let v = cache.get(HookPoint::new(layer, HookKind::V)).unwrap();
            let z = cache.get(HookPoint::new(layer, HookKind::Z)).unwrap();
            let result = cache.get(HookPoint::new(layer, HookKind::Result)).unwrap();
            assert_eq!(pattern.dims(), &[info.heads, seq, seq], "{name}");
            assert_eq!(v.dims(), &[seq, info.kv_heads, info.head_dim], "{name}");
            assert_eq!(z.dims(), &[seq, info.heads, info.head_dim], "{name}");
            assert_eq!(result.dims(), &[seq, info.heads, info.hidden], "{name}");
            let recomputed = pattern.matmul(&v.transpose(0, 1).unwrap().contiguous().unwrap()).unwrap();
            let z_heads_first = z.transpose(0, 1).unwrap().contiguous().unwrap();
            let diff: f32 = (recomputed - z_heads_first).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(diff < 1e-5, "{name} L{layer}: z != pattern @ v ({diff:e})");
        }
        let full = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture;
        let first = Capture::run(loaded.model.as_ref(), &input, Some(vec![0]), &[]).unwrap().capture;
        assert_eq!(first.head(0, 1).unwrap(), full.head(0, 1).unwrap(), "{name}");
        assert!(first.head(1, 0).is_none());
    }
}

/// Rewrite one key of a copied config.json.
fn set_config(model: &Path, key: &str, value: serde_json::Value) {
    let path = model.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// A known model_type whose weights do not match its config ends in one clean line, exit 2.
#[test]
fn weights_that_do_not_match_the_config_are_one_clean_error() {
    for (name, model_type) in MODELS {
        let layers_key = match *model_type {
            "gpt2" => "n_layer",
            "distilbert" => "n_layers",
            _ => "num_hidden_layers",
        };
        let output = run_broken_model(&model_dir(name), |m| set_config(m, layers_key, 3.into()));
        assert_clean_failure(&output, &format!("does not hold {model_type} weights as config.json describes"));
        let hidden_key = match *model_type {
            "gpt2" => "n_embd",
            "distilbert" => "dim",
            _ => "hidden_size",
        };
        let output = run_broken_model(&model_dir(name), |m| set_config(m, hidden_key, 96.into()));
        assert_clean_failure(&output, &format!("does not hold {model_type} weights"));
    }
    // Weights of another architecture under a known model_type.
    let output = run_broken_model(&model_dir("tiny-gpt-neox"), |m| {
        std::fs::copy(model_dir("tiny-gpt2").join("model.safetensors"), m.join("model.safetensors")).unwrap();
    });
    assert_clean_failure(&output, "does not hold gpt_neox weights");
}

/// Configs attnmap cannot follow are refused by name, before any weight is read.
#[test]
fn unsupported_settings_name_the_field() {
    let output = run_broken_model(&model_dir("tiny-gpt-neox"), |m| set_config(m, "rotary_pct", 0.3125.into()));
    assert_clean_failure(&output, "RoPE needs an even number");
    let output = run_broken_model(&model_dir("tiny-gpt-neox-sequential"), |m| {
        set_config(m, "rope_parameters", serde_json::json!({"rope_type": "dynamic", "factor": 2.0, "rope_theta": 500.0}))
    });
    assert_clean_failure(&output, "rope_type \"dynamic\"");
    let output = run_broken_model(&model_dir("tiny-roberta"), |m| set_config(m, "max_position_embeddings", 2.into()));
    assert_clean_failure(&output, "pad_token_id + 1");
    let output = run_broken_model(&model_dir("tiny-gpt2"), |m| set_config(m, "activation_function", "tanh".into()));
    assert_clean_failure(&output, "config.json");
    let output = run_broken_model(&model_dir("tiny-gpt2"), |m| set_config(m, "n_head", 5.into()));
    assert_clean_failure(&output, "impossible shape");
}

