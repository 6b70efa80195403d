//! Dumps that stream (issue 10): a dump holds one layer of maps at a time, and what limits
//! it is the disk, checked before any work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::helpers::{assert_clean_failure, attnmap, minilm_dir, stderr, tiny_bert_dir};

/// Bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() { folder_bytes(&entry.path()) } else { meta.len() }
        })
        .sum()
}

/// The size a refusal names, in bytes ("needs about 12.3 MiB").
fn needed_bytes(err: &str) -> f64 {
    let rest = err.split("needs about ").nth(1).unwrap_or_else(|| panic!("no size in {err}"));
    let mut words = rest.split_whitespace();
    let number: f64 = words.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number in {err}"));
    let unit = match words.next() {
        Some("GiB") => (1u64 << 30) as f64,
        Some("MiB") => (1u64 << 20) as f64,
        Some("KiB") => 1024.0,
        other => panic!("unit {other:?} in {err}"),
    };
    number * unit
}

/// Less free space than a dump needs: one error line naming both, exit 2, nothing written
/// (not the folder, not a staging folder beside it).
#[test]
fn a_dump_needing_more_than_the_free_space_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let model = tiny_bert_dir();
    // ATTNMAP_FREE_BYTES stands in for statvfs's answer (no test can fill a disk).
    let output = attnmap(&["dump", "the cat sat on the mat", "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap()], &[("ATTNMAP_FREE_BYTES", "1000")]);
    assert_clean_failure(&output, "has 1.0 KiB free");
    assert!(stderr(&output).contains(dir.path().to_str().unwrap()), "the refusal names where: {}", stderr(&output));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
    // With room, the same dump is written.
    let output = attnmap(&["dump", "the cat sat on the mat", "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap()], &[("ATTNMAP_FREE_BYTES", "100000000")]);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The estimate a refusal names is never below what the dump then writes (pictures
/// included), and not so far above that it refuses dumps that would fit: between 1x and 3x
/// the bytes written, on a default dump and on one with views, words and SVG.
#[test]
fn the_size_estimate_covers_what_a_dump_writes() {
    let dir = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let text = "The support team never answered my emails about the broken order, so I wrote again. ".repeat(8);
    for extra in [&[][..], &["--views", "norm,rollout", "--words", "--svg"][..]] {
        let out = dir.path().join("dump");
        let mut args = vec!["dump", text.as_str(), "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap(), "--force"];
        args.extend_from_slice(extra);
        let output = attnmap(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        let written = folder_bytes(&out) as f64;
        let free = format!("{}", written as u64 - 1);
        let refused = attnmap(&args, &[("ATTNMAP_FREE_BYTES", free.as_str())]);
        assert_clean_failure(&refused, "free");
        let needed = needed_bytes(&stderr(&refused));
        // The message rounds to a tenth of its unit.
        assert!(needed >= written * 0.99, "{extra:?}: estimated {needed} bytes, wrote {written}");
        assert!(needed <= written * 3.0, "{extra:?}: estimated {needed} bytes for {written} written");
    }
}

/// A BERT with `layers` layers of 32 heads (head size 2) reading up to 512 tokens, random
/// weights from a fixed seed, with tiny-bert's tokenizer: big maps, small weights.
fn many_heads_bert(dir: &Path, layers: usize) -> PathBuf {
    let (hidden, inner, positions, vocab) = (64usize, 64usize, 512usize, 256usize);
    let model = dir.join(format!("bert-{layers}"));
    std::fs::create_dir(&model).unwrap();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut random = |shape: &[usize], scale: f32| {
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    };
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = |n: usize| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("embeddings.word_embeddings.weight".into(), random(&[vocab, hidden], 1.0));
    tensors.insert("embeddings.position_embeddings.weight".into(), random(&[positions, hidden], 1.0));
    tensors.insert("embeddings.token_type_embeddings.weight".into(), random(&[2, hidden], 1.0));
    tensors.insert("embeddings.LayerNorm.weight".into(), ones(hidden));
    tensors.insert("embeddings.LayerNorm.bias".into(), zeros(hidden));
    for layer in 0..layers {
        let name = |rest: &str| format!("encoder.layer.{layer}.{rest}");
        for part in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            tensors.insert(name(&format!("{part}.weight")), random(&[hidden, hidden], 0.5));
            tensors.insert(name(&format!("{part}.bias")), random(&[hidden], 0.1));
        }
        tensors.insert(name("intermediate.dense.weight"), random(&[inner, hidden], 0.3));
        tensors.insert(name("intermediate.dense.bias"), zeros(inner));
        tensors.insert(name("output.dense.weight"), random(&[hidden, inner], 0.3));
        tensors.insert(name("output.dense.bias"), zeros(hidden));
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            tensors.insert(name(&format!("{norm}.weight")), ones(hidden));
            tensors.insert(name(&format!("{norm}.bias")), zeros(hidden));
        }
    }
    candle_core::safetensors::save(&tensors, model.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tiny_bert_dir().join("config.json")).unwrap()).unwrap();
    config["hidden_size"] = hidden.into();
    config["intermediate_size"] = inner.into();
    config["num_attention_heads"] = 32.into();
    config["num_hidden_layers"] = layers.into();
    config["max_position_embeddings"] = positions.into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    for file in ["tokenizer.json", "vocab.txt", "special_tokens_map.json"] {
        std::fs::copy(tiny_bert_dir().join(file), model.join(file)).unwrap();
    }
    let mut tokenizer_config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tiny_bert_dir().join("tokenizer_config.json")).unwrap()).unwrap();
    tokenizer_config["model_max_length"] = positions.into();
    std::fs::write(model.join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();
    model
}

/// Run attnmap and return its own peak RSS in bytes (wait4's rusage is this child's alone,
/// unlike RUSAGE_CHILDREN, which other tests' children running meanwhile would spoil).
fn peak_rss(args: &[&str]) -> u64 {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet waited for; status and usage are filled by the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    let err = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "attnmap {args:?} failed: {err}");
    usage.ru_maxrss as u64 * 1024
}

/// A dump holds one layer of maps at a time: 16 layers peak within a few layers' maps of 4
/// layers (the weights differ by 12 x 50 KB), where holding them all (as dumps did) would
/// add 12 x 32 MiB of attention alone, and as much again of norm.
#[test]
fn a_dump_holds_one_layer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = "the cat sat on the mat and looked at the dog. ".repeat(50);
    let layer_bytes = 32u64 * 512 * 512 * 4;
    let mut peaks = Vec::new();
    for layers in [4, 16] {
        let model = many_heads_bert(dir.path(), layers);
        let out = dir.path().join(format!("dump-{layers}"));
        // No pictures: 512 PNGs of 512 tokens would take minutes; grid.png, norm and words stream all the same.
        let peak = peak_rss(&["-q", "dump", &text, "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-pictures", "--views", "norm", "--words"]);
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["seq_len"], 512, "the text must fill the model's 512 positions");
        assert_eq!(std::fs::metadata(out.join("attention.npy")).unwrap().len(), 128 + layers as u64 * layer_bytes);
        std::fs::remove_dir_all(&out).unwrap();
        peaks.push(peak);
    }
    let grown = peaks[1].saturating_sub(peaks[0]);
    assert!(grown < 3 * layer_bytes, "16 layers peaked {} MiB above 4 layers ({} and {} MiB); one layer is {} MiB", grown >> 20, peaks[0] >> 20, peaks[1] >> 20, layer_bytes >> 20);
}

/// The streamed arrays are the whole-array computation's, bit for bit: weights, norm,
/// rollout and flow (`view_all` over a capture holding every layer), and their word merges,
/// on a decoder (causal maps) with --scale fixed (norm's pictures wait for the last layer).
#[test]
fn streamed_arrays_equal_the_whole_capture_bit_for_bit() {
    use attnmap::analysis::views::{view_all, View};
    use attnmap::hooks::HookKind;
    let model_dir = crate::helpers::fixtures().join("tiny-gpt2");
    let text = "hello world this is a test of streaming";
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let output = attnmap(&["dump", text, "--model", model_dir.to_str().unwrap(), "--out", out.to_str().unwrap(), "--views", "all", "--words", "--scale", "fixed"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let loaded = crate::helpers::loaded(&model_dir);
    let input = loaded.tokenizer.encode(text, None).unwrap();
    let capture = attnmap::Capture::run(loaded.model.as_ref(), &input, None, &[HookKind::ValueNorm]).unwrap().capture;
    let words = attnmap::analysis::words::words(&input);
    let read = |file: &str| attnmap::output::read_npy_f32(&std::fs::read(out.join(file)).unwrap()).unwrap().1;
    for (view, file) in [(View::Weights, "attention.npy"), (View::Norm, "norm.npy"), (View::Rollout, "rollout.npy"), (View::Flow, "flow.npy")] {
        let whole = view_all(&capture, view).unwrap();
        assert!(read(file) == whole, "{file} differs from the whole capture's");
        let merged = attnmap::analysis::words::merge_maps(&whole, capture.seq, &words);
        assert!(read(&format!("words/{file}")) == merged, "words/{file} differs");
    }
    // Every per-map picture is there (norm's drawn after the last layer, on one range).
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        assert!(out.join(file.as_str().unwrap()).is_file(), "{file} listed but missing");
    }
    assert!(out.join("norm/L01_H01.png").is_file() && out.join("view.html").is_file());
}

/// --no-pictures: the same arrays, grid.png and page, no per-map picture, and a manifest that
/// says so (pictures null, no picture listed).
#[test]
fn no_pictures_keeps_the_arrays_the_grid_and_the_page() {
    let model = tiny_bert_dir();
    let dir = tempfile::tempdir().unwrap();
    let (full, bare) = (dir.path().join("full"), dir.path().join("bare"));
    for (out, extra) in [(&full, None), (&bare, Some("--no-pictures"))] {
        let mut args = vec!["dump", "the cat sat on the mat", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap(), "--views", "norm,rollout"];
        args.extend(extra);
        let output = attnmap(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    for file in ["attention.npy", "norm.npy", "rollout.npy", "grid.png", "view.html"] {
        assert!(std::fs::read(full.join(file)).unwrap() == std::fs::read(bare.join(file)).unwrap(), "{file} differs");
    }
    assert!(!bare.join("heads").exists() && !bare.join("norm").exists() && !bare.join("rollout").exists());
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(bare.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["views"]["weights"]["pictures"].is_null() && manifest["views"]["norm"]["pictures"].is_null());
    let files: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(files, ["attention.npy", "grid.png", "norm.npy", "rollout.npy", "manifest.json", "view.html"]);
    let refused = attnmap(&["dump", "the cat", "--model", model.to_str().unwrap(), "--out", dir.path().join("x").to_str().unwrap(), "--no-pictures", "--svg"], &[]);
    assert_eq!(refused.status.code(), Some(2));
}
