//! Views (norm, rollout, flow) and word-level maps against references from transformers,
//! numpy and networkx (tests/fixtures/views, made by scripts/fixtures_views.py), and the
//! `--view`, `--views` and `--words` flags of show, dump and diff.
//!
//! Bounds: the 1e-5 (norm: relative to the map's maximum). Word maps sum a word's
//! columns, so their bound is 1e-5 per token of the longest word.

use std::collections::HashMap;
use std::path::PathBuf;

use attnmap::analysis::views::{view_all, view_map, View};
use attnmap::analysis::words;
use attnmap::capture::Capture;
use attnmap::hooks::HookKind;
use attnmap::output::read_npy_f32;
use candle_core::Tensor;

use crate::helpers::{assert_clean_failure, attnmap, fixtures, loaded, minilm_dir, repo_root, stderr};

const TOLERANCE: f32 = 1e-5;

#[derive(Debug, Clone, serde::Deserialize)]
struct ViewCase {
    model: String,
    model_path: String,
    case: String,
    text: String,
    pair: Option<String>,
    layers: usize,
    heads: usize,
    file: String,
}

fn view_cases() -> Vec<ViewCase> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("views/cases.json")).unwrap()).unwrap();
    serde_json::from_value(json["cases"].clone()).unwrap()
}

fn model_dir(case: &ViewCase) -> PathBuf {
    if case.model == "minilm" { minilm_dir() } else { repo_root().join(&case.model_path) }
}

fn reference(case: &ViewCase) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("views").join(&case.file), &candle_core::Device::Cpu).unwrap()
}

fn floats(tensors: &HashMap<String, Tensor>, name: &str) -> Vec<f32> {
    tensors[name].flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn indices(tensors: &HashMap<String, Tensor>, name: &str) -> Vec<usize> {
    tensors[name].to_vec1::<i64>().unwrap().into_iter().map(|v| v as usize).collect()
}

/// Run the case's model with value norms, checking the tokens are the reference's.
fn capture(case: &ViewCase, tensors: &HashMap<String, Tensor>) -> Capture {
    let model = loaded(&model_dir(case));
    let input = model.tokenizer.encode(&case.text, case.pair.as_deref()).unwrap();
    let ids: Vec<usize> = input.ids.iter().map(|&id| id as usize).collect();
    assert_eq!(ids, indices(tensors, "input_ids"), "{}/{}: token ids differ from transformers'", case.model, case.case);
    let run = Capture::run(model.model.as_ref(), &input, None, &[HookKind::ValueNorm]).unwrap();
    assert_eq!((run.capture.layers, run.capture.heads), (case.layers, case.heads));
    run.capture
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_of(values: &[f32]) -> f32 {
    values.iter().copied().fold(0.0, f32::max)
}

#[test]
fn norms_match_transformers_on_every_architecture() {
    let mut families = std::collections::BTreeSet::new();
    for case in view_cases() {
        let tensors = reference(&case);
        let capture = capture(&case, &tensors);
        let seq = capture.seq;
        let value_norms = floats(&tensors, "value_norm");
        let norm = floats(&tensors, "norm");
        for layer in 0..case.layers {
            let ours = capture.value_norms(layer).expect("value norms captured");
            let theirs = &value_norms[layer * case.heads * seq..(layer + 1) * case.heads * seq];
            assert!(max_abs_diff(ours, theirs) <= TOLERANCE * max_of(theirs), "{}/{} layer {layer}: value norms differ", case.model, case.case);
        }
        for (slot, layer) in indices(&tensors, "norm_layers").into_iter().enumerate() {
            for head in 0..case.heads {
                let ours = view_map(&capture, View::Norm, layer, Some(head)).unwrap();
                let offset = (slot * case.heads + head) * seq * seq;
                let theirs = &norm[offset..offset + seq * seq];
                let diff = max_abs_diff(&ours, theirs);
                assert!(diff <= TOLERANCE * max_of(theirs), "{}/{} L{layer} H{head}: norm differs by {diff} (max {})", case.model, case.case, max_of(theirs));
            }
        }
        families.insert(loaded(&model_dir(&case)).model_type.clone());
    }
    // Every architecture attnmap supports from a folder has a case (GGUF shares llama's code).
    for family in ["bert", "roberta", "xlm-roberta", "distilbert", "gpt2", "gpt_neox", "llama", "mistral", "qwen2"] {
        assert!(families.contains(family), "no view fixture for {family}: {families:?}");
    }
}

#[test]
fn rollout_matches_numpy() {
    for case in view_cases() {
        let tensors = reference(&case);
        let capture = capture(&case, &tensors);
        let ours = view_all(&capture, View::Rollout).unwrap();
        let diff = max_abs_diff(&ours, &floats(&tensors, "rollout"));
        assert!(diff <= TOLERANCE, "{}/{}: rollout differs by {diff}", case.model, case.case);
        // The last layer's map alone (what `show --view rollout` draws) is the same numbers.
        let last = case.layers - 1;
        let seq = capture.seq;
        assert_eq!(view_map(&capture, View::Rollout, last, None).unwrap(), ours[last * seq * seq..].to_vec());
    }
}

#[test]
fn flow_matches_networkx() {
    for case in view_cases() {
        let tensors = reference(&case);
        let capture = capture(&case, &tensors);
        let seq = capture.seq;
        if tensors.contains_key("flow") {
            let ours = view_all(&capture, View::Flow).unwrap();
            let diff = max_abs_diff(&ours, &floats(&tensors, "flow"));
            assert!(diff <= TOLERANCE, "{}/{}: flow differs by {diff}", case.model, case.case);
        } else {
            let layer = indices(&tensors, "flow_layer")[0];
            let ours = view_map(&capture, View::Flow, layer, None).unwrap();
            let theirs = floats(&tensors, "flow_rows");
            for (slot, row) in indices(&tensors, "flow_row_index").into_iter().enumerate() {
                let diff = max_abs_diff(&ours[row * seq..(row + 1) * seq], &theirs[slot * seq..(slot + 1) * seq]);
                assert!(diff <= TOLERANCE, "{}/{} row {row}: flow differs by {diff}", case.model, case.case);
            }
        }
    }
}

#[test]
fn word_maps_equal_numpys_merge_over_transformers_word_ids() {
    for case in view_cases() {
        let tensors = reference(&case);
        let capture = capture(&case, &tensors);
        let seq = capture.seq;
        let words = words::words(&capture.input);
        let spans: Vec<(usize, usize)> = words.iter().map(|w| (w.tokens.start, w.tokens.end)).collect();
        let expected: Vec<(usize, usize)> = indices(&tensors, "word_start").into_iter().zip(indices(&tensors, "word_end")).collect();
        assert_eq!(spans, expected, "{}/{}: words differ from transformers' word_ids()", case.model, case.case);
        let longest = spans.iter().map(|(a, b)| b - a).max().unwrap_or(1) as f32;
        let bound = TOLERANCE * longest;
        let layer = indices(&tensors, "words_layer")[0];
        let heads = indices(&tensors, "words_heads");
        let count = words.len();
        for (view, name) in [(View::Weights, "words_weights"), (View::Norm, "words_norm")] {
            let theirs = floats(&tensors, name);
            for (slot, &head) in heads.iter().enumerate() {
                let ours = words::merge_map(&view_map(&capture, view, layer, Some(head)).unwrap(), seq, &words);
                let reference = &theirs[slot * count * count..(slot + 1) * count * count];
                let scale = if view == View::Norm { max_of(reference) } else { 1.0 };
                let diff = max_abs_diff(&ours, reference);
                assert!(diff <= bound * scale, "{}/{} {name} head {head}: differs by {diff}", case.model, case.case);
            }
        }
        let rollout = words::merge_maps(&view_all(&capture, View::Rollout).unwrap(), seq, &words);
        let diff = max_abs_diff(&rollout, &floats(&tensors, "words_rollout"));
        assert!(diff <= bound, "{}/{}: word rollout differs by {diff}", case.model, case.case);
        for row in rollout.chunks(count) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "word rows still sum to 1");
        }
    }
}

#[test]
fn value_norms_are_kept_only_when_asked_for() {
    let case = view_cases().into_iter().find(|c| c.model == "tiny-llama").unwrap();
    let model = loaded(&model_dir(&case));
    let input = model.tokenizer.encode(&case.text, None).unwrap();
    let run = Capture::run(model.model.as_ref(), &input, Some(vec![1]), &[]).unwrap();
    assert!(run.capture.value_norms(1).is_none() && run.cache.points().all(|p| p.kind != HookKind::ValueNorm));
    let error = view_map(&run.capture, View::Norm, 1, Some(0)).unwrap_err().to_string();
    assert!(error.contains("value norms"), "{error}");
}

/// The binary's views equal the references: `show --view V [--words] -o .npy`.
#[test]
fn show_writes_every_view_as_npy_png_and_json() {
    let case = view_cases().into_iter().find(|c| c.model == "minilm" && c.case == "short").unwrap();
    let tensors = reference(&case);
    let model = minilm_dir();
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seq = indices(&tensors, "input_ids").len();
    let npy = |args: &[&str]| -> Vec<f32> {
        let out = dir.path().join("map.npy");
        let output = attnmap(&[&[case.text.as_str(), "--model", model, "-o", out.to_str().unwrap()], args].concat(), &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        read_npy_f32(&std::fs::read(out).unwrap()).unwrap().1
    };
    let norm = npy(&["--layer", "5", "--head", "3", "--view", "norm"]);
    let theirs = &floats(&tensors, "norm")[(5 * case.heads + 3) * seq * seq..(5 * case.heads + 4) * seq * seq];
    assert!(max_abs_diff(&norm, theirs) <= TOLERANCE * max_of(theirs));
    let rollout = npy(&["--layer", "5", "--view", "rollout"]);
    assert!(max_abs_diff(&rollout, &floats(&tensors, "rollout")[5 * seq * seq..]) <= TOLERANCE);
    let flow = npy(&["--layer", "2", "--view", "flow"]);
    assert!(max_abs_diff(&flow, &floats(&tensors, "flow")[2 * seq * seq..3 * seq * seq]) <= TOLERANCE);
    let words_rollout = npy(&["--layer", "5", "--view", "rollout", "--words"]);
    let count = indices(&tensors, "word_start").len();
    assert!(max_abs_diff(&words_rollout, &floats(&tensors, "words_rollout")[5 * count * count..]) <= TOLERANCE * 4.0);

    // Every view draws and writes JSON that says which view it is.
    let mut pictures = Vec::new();
    for (view, head) in [("weights", Some("3")), ("norm", Some("3")), ("rollout", None), ("flow", None)] {
        for format in ["png", "json"] {
            let out = dir.path().join(format!("{view}.{format}"));
            let mut args = vec![case.text.as_str(), "--model", model, "--layer", "5", "--view", view, "-o", out.to_str().unwrap()];
            if let Some(head) = head {
                args.extend(["--head", head]);
            }
            let output = attnmap(&args, &[]);
            assert!(output.status.success(), "{view}.{format}: {}", stderr(&output));
            let bytes = std::fs::read(&out).unwrap();
            if format == "json" {
                let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                if view == "weights" {
                    // The weights keep show's own JSON (one head's "attention" rows).
                    assert_eq!(json["attention"].as_array().unwrap().len(), seq);
                } else {
                    assert_eq!(json["view"], view);
                    assert!(json["formula"].as_str().unwrap().len() > 10);
                    assert_eq!(json["values"].as_array().unwrap().len(), seq);
                }
            } else {
                assert!(bytes.starts_with(b"\x89PNG"));
                pictures.push(bytes);
            }
        }
    }
    for (i, a) in pictures.iter().enumerate() {
        assert!(pictures[i + 1..].iter().all(|b| a != b), "each view draws its own picture");
    }
}

#[test]
fn views_refuse_what_does_not_apply_in_one_line() {
    let model = minilm_dir();
    let model = model.to_str().unwrap();
    let output = attnmap(&["the cat sat", "--model", model, "--layer", "3", "--head", "2", "--view", "rollout"], &[]);
    assert_clean_failure(&output, "mixes every head");
    let output = attnmap(&["the cat sat", "--model", model, "--layer", "3", "--view", "norm"], &[]);
    assert_clean_failure(&output, "--head");
    let long = "word ".repeat(200);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("flow.png");
    let output = attnmap(&[long.as_str(), "--model", model, "--layer", "5", "--view", "flow", "-o", out.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "limited to 160 tokens");
    assert!(!out.exists());
}

#[test]
fn dump_views_and_words_write_the_documented_layout_and_diff_compares_them() {
    let model = fixtures().join("tiny-llama");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let text = "The quick brown fox jumps over the lazy dog.";
    let output = attnmap(&["dump", text, "--model", model, "--views", "all", "--words", "--out", out.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let (layers, heads, seq) = (2, 4, manifest["seq_len"].as_u64().unwrap() as usize);
    let word_count = manifest["words"]["labels"].as_array().unwrap().len();
    for (view, shape, picture) in [
        ("norm", vec![layers, heads, seq, seq], "norm/L01_H03.png"),
        ("rollout", vec![layers, seq, seq], "rollout/L01.png"),
        ("flow", vec![layers, seq, seq], "flow/L01.png"),
    ] {
        let (found, _) = read_npy_f32(&std::fs::read(out.join(format!("{view}.npy"))).unwrap()).unwrap();
        assert_eq!(found, shape, "{view}.npy");
        assert!(out.join(picture).is_file(), "{picture}");
        assert!(manifest["views"][view]["formula"].as_str().unwrap().contains(if view == "norm" { "W_O" } else { "Â" }));
        let mut word_shape = shape.clone();
        let n = word_shape.len();
        word_shape[n - 2..].fill(word_count);
        let (found, _) = read_npy_f32(&std::fs::read(out.join(format!("words/{view}.npy"))).unwrap()).unwrap();
        assert_eq!(found, word_shape, "words/{view}.npy");
    }
    let (found, _) = read_npy_f32(&std::fs::read(out.join("words/attention.npy")).unwrap()).unwrap();
    assert_eq!(found, vec![layers, heads, word_count, word_count]);

    // The same dump twice: every view compares equal; a view a dump lacks is named.
    let plain = dir.path().join("plain");
    let output = attnmap(&["dump", text, "--model", model, "--out", plain.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for view in ["weights", "norm", "rollout", "flow"] {
        let output = attnmap(&["diff", out.to_str().unwrap(), out.to_str().unwrap(), "--view", view, "--json"], &[]);
        assert_eq!(output.status.code(), Some(0), "{view}: {}", stderr(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let compared = report["heads"].as_array().unwrap().len();
        assert_eq!(compared, if view == "weights" || view == "norm" { layers * heads } else { layers }, "{view}");
    }
    let output = attnmap(&["diff", plain.to_str().unwrap(), out.to_str().unwrap(), "--view", "norm"], &[]);
    assert_clean_failure(&output, "--views norm");
}
