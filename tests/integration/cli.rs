//! The binary as a user runs it: outputs, the dump layout, and every bad input
//! ending in one clear line and exit 2.

use std::path::Path;

use attnmap::output::read_npy_f32;

use crate::helpers::{assert_clean_failure, attnmap, dumps_across_thread_counts, fixtures, minilm_dir, run_broken_model, stderr, tiny_bert_dir};

fn model_arg(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

#[test]
fn show_writes_png_npy_and_json_of_one_head() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_arg(&minilm_dir());
    for ext in ["png", "npy", "json"] {
        let out = dir.path().join(format!("map.{ext}"));
        let output = attnmap(&["The WhirlyGigs arrived broken", "--layer", "5", "--head", "3", "--model", &model, "-o", out.to_str().unwrap()], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(out.is_file(), "{ext}");
    }
    let png = image::open(dir.path().join("map.png")).unwrap();
    assert!(png.width() > 200 && png.height() > 200);
    let (shape, values) = read_npy_f32(&std::fs::read(dir.path().join("map.npy")).unwrap()).unwrap();
    assert_eq!(shape, vec![10, 10]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("map.json")).unwrap()).unwrap();
    assert_eq!(json["tokens"][0], "[CLS]");
    assert_eq!(json["layer"], 5);
    let first_row: Vec<f32> = json["attention"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(first_row, values[..10].to_vec(), "json and npy carry the same numbers");
    // And they are layer 5, head 3 of the capture, not another head (the library's own run).
    let loaded = crate::helpers::loaded(&minilm_dir());
    let input = loaded.tokenizer.encode("The WhirlyGigs arrived broken", None).unwrap();
    let capture = attnmap::Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture;
    assert_eq!(values, capture.head(5, 3).unwrap(), "-o map.npy holds layer 5, head 3");
    for (layer, head) in [(3, 5), (5, 2), (4, 3)] {
        assert_ne!(values, capture.head(layer, head).unwrap(), "layer {layer}, head {head} must differ for this check to mean anything");
    }
}

#[test]
fn show_default_name_and_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_arg(&tiny_bert_dir());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
        .args(["the cat sat", "--layer", "1", "--head", "2", "--model", &model])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("tiny-bert_L01_H02.png").is_file());
    assert!(stderr(&output).contains("tiny-bert_L01_H02.png"));

    let output = attnmap(&["the cat sat", "--layer", "1", "--head", "2", "--model", &model, "-o", "-"], &[]);
    assert!(output.status.success());
    assert!(output.stdout.starts_with(b"\x89PNG"));
    let output = attnmap(&["the cat sat", "--layer", "1", "--head", "2", "--model", &model, "-o", "-", "--format", "npy"], &[]);
    assert_eq!(read_npy_f32(&output.stdout).unwrap().0, vec![5, 5]);
}

#[test]
fn text_from_stdin_and_file_equal_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_arg(&tiny_bert_dir());
    let text_file = dir.path().join("text.txt");
    std::fs::write(&text_file, "the red cat sat on the mat\n").unwrap();
    let from_arg = attnmap(&["the red cat sat on the mat", "-l", "0", "-H", "1", "--model", &model, "-o", "-", "--format", "npy"], &[]);
    let from_file = attnmap(&["--file", text_file.to_str().unwrap(), "-l", "0", "-H", "1", "--model", &model, "-o", "-", "--format", "npy"], &[]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
        .args(["-", "-l", "0", "-H", "1", "--model", &model, "-o", "-", "--format", "npy"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"the red cat sat on the mat\n").unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert!(from_arg.status.success() && from_file.status.success() && from_stdin.status.success());
    assert_eq!(from_arg.stdout, from_file.stdout);
    assert_eq!(from_arg.stdout, from_stdin.stdout);
}

#[test]
fn dump_writes_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let model = model_arg(&minilm_dir());
    let output = attnmap(&["dump", "The WhirlyGigs arrived broken", "--out", out.to_str().unwrap(), "--model", &model], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["layers"], 6);
    assert_eq!(manifest["heads"], 12);
    assert_eq!(manifest["seq_len"], 10);
    assert_eq!(manifest["architecture"], "bert");
    assert_eq!(manifest["weights_sha256"], "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db");
    assert_eq!(manifest["ids"].as_array().unwrap().len(), 10);
    assert_eq!(manifest["tokens"][0], "[CLS]");
    assert_eq!(manifest["text"], "The WhirlyGigs arrived broken");
    let (shape, values) = read_npy_f32(&std::fs::read(out.join("attention.npy")).unwrap()).unwrap();
    assert_eq!(shape, vec![6, 12, 10, 10]);
    // [layer, head, query, key] in C order: the library's capture, cell for cell.
    let loaded = crate::helpers::loaded(&minilm_dir());
    let input = loaded.tokenizer.encode("The WhirlyGigs arrived broken", None).unwrap();
    let capture = attnmap::Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap().capture;
    assert_eq!(values, capture.dense().unwrap());
    assert_eq!(manifest["tokens"], serde_json::json!(input.tokens));
    assert_eq!(manifest["ids"], serde_json::json!(input.ids));
    // heads/L05_H03.png is layer 5, head 3: the same picture `show --layer 5 --head 3` draws.
    let show = attnmap(&["The WhirlyGigs arrived broken", "--layer", "5", "--head", "3", "--model", &model, "-o", "-"], &[]);
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(std::fs::read(out.join("heads/L05_H03.png")).unwrap() == show.stdout, "heads/L05_H03.png is not layer 5, head 3");
    for layer in 0..6 {
        for head in 0..12 {
            assert!(out.join(format!("heads/L{layer:02}_H{head:02}.png")).is_file());
        }
    }
    assert!(out.join("grid.png").is_file());
    let listed: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(listed.len(), 72 + 4, "heads, grid.png, attention.npy, manifest.json, view.html");
    for file in listed {
        assert!(out.join(file).is_file(), "manifest lists missing {file}");
    }
    // No staging folder is left beside the dump.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() != "dump").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second dump into the same folder is refused and leaves it untouched.
    let before = std::fs::read(out.join("attention.npy")).unwrap();
    let again = attnmap(&["dump", "other text", "--out", out.to_str().unwrap(), "--model", &model], &[]);
    assert_clean_failure(&again, "--force");
    assert_eq!(std::fs::read(out.join("attention.npy")).unwrap(), before);
    // --force replaces it.
    let forced = attnmap(&["dump", "other text", "--out", out.to_str().unwrap(), "--model", &model, "--force"], &[]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["text"], "other text");
}

#[test]
fn dump_is_byte_identical_across_thread_counts() {
    let model = model_arg(&minilm_dir());
    let text = "Byte-identical maps, whatever the thread count, keep CI diffs from flickering.";
    dumps_across_thread_counts(&model, text);
}

#[test]
fn truncation_is_warned_about() {
    let model = model_arg(&tiny_bert_dir());
    let long = "the cat sat on the mat and the dog ran to the red house ".repeat(6);
    let output = attnmap(&[&long, "-l", "0", "-H", "0", "--model", &model, "-o", "-", "--format", "npy"], &[]);
    assert!(output.status.success());
    assert!(stderr(&output).contains("were dropped"), "{}", stderr(&output));
    assert_eq!(read_npy_f32(&output.stdout).unwrap().0, vec![40, 40]);
}

#[test]
fn bad_layer_and_head_name_the_valid_range() {
    let model = model_arg(&minilm_dir());
    let output = attnmap(&["hello", "--layer", "6", "--head", "0", "--model", &model], &[]);
    assert_clean_failure(&output, "layer 6 is out of range: this model has layers 0-5");
    let output = attnmap(&["hello", "--layer", "0", "--head", "12", "--model", &model], &[]);
    assert_clean_failure(&output, "head 12 is out of range: this model has heads 0-11");
    let output = attnmap(&["hello", "--model", &model], &[]);
    assert_clean_failure(&output, "--layer L --head H");
}

#[test]
fn bad_inputs_end_in_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_arg(&tiny_bert_dir());
    let ok = ["-l", "0", "-H", "0", "--model"];

    // Empty text.
    let output = attnmap(&[&[" "], &ok[..], &[&model]].concat(), &[]);
    assert_clean_failure(&output, "text is empty");
    // Missing model folder.
    let output = attnmap(&["hi", "-l", "0", "-H", "0", "--model", "./no/such/model"], &[]);
    assert_clean_failure(&output, "no such file or folder");
    // Missing output folder: not created.
    let target = dir.path().join("missing/map.png");
    let output = attnmap(&[&["hi"], &ok[..], &[&model, "-o", target.to_str().unwrap()]].concat(), &[]);
    assert_clean_failure(&output, "does not exist");
    assert!(!dir.path().join("missing").exists());
    // Unknown output extension.
    let output = attnmap(&[&["hi"], &ok[..], &[&model, "-o", "map.bmp"]].concat(), &[]);
    assert_clean_failure(&output, ".png, .svg, .html, .npy or .json");
    // Missing --file.
    let output = attnmap(&["--file", "/no/such/text.txt", "-l", "0", "-H", "0", "--model", &model], &[]);
    assert_clean_failure(&output, "/no/such/text.txt");
    // An unwritable folder (root may write anywhere else, but not into /proc).
    if Path::new("/proc/self").exists() {
        let output = attnmap(&[&["hi"], &ok[..], &[&model, "-o", "/proc/attnmap-map.png"]].concat(), &[]);
        assert_clean_failure(&output, "choose a folder you can write to");
        let output = attnmap(&["dump", "hi", "--out", "/proc/attnmap-dump", "--model", &model], &[]);
        assert_clean_failure(&output, "choose a folder you can write to");
    }
    // Dump into a missing parent.
    let output = attnmap(&["dump", "hi", "--out", dir.path().join("a/b").to_str().unwrap(), "--model", &model], &[]);
    assert_clean_failure(&output, "does not exist");
}

/// Copy the tiny model into a temp folder, let `spoil` break one file, and run.
fn run_broken(spoil: impl FnOnce(&Path)) -> std::process::Output {
    run_broken_model(&tiny_bert_dir(), spoil)
}

#[test]
fn broken_model_files_are_reported_not_panicked() {
    let output = run_broken(|m| std::fs::remove_file(m.join("tokenizer.json")).unwrap());
    assert_clean_failure(&output, "tokenizer.json is missing");
    let output = run_broken(|m| std::fs::write(m.join("tokenizer.json"), "{ not json").unwrap());
    assert_clean_failure(&output, "tokenizer");
    let output = run_broken(|m| std::fs::write(m.join("config.json"), "{]").unwrap());
    assert_clean_failure(&output, "config.json");
    let output = run_broken(|m| {
        let text = std::fs::read_to_string(m.join("config.json")).unwrap().replace("\"bert\"", "\"perceiver\"");
        std::fs::write(m.join("config.json"), text).unwrap();
    });
    assert_clean_failure(&output, "model_type \"perceiver\" is not supported");
    let output = run_broken(|m| {
        let bytes = std::fs::read(m.join("model.safetensors")).unwrap();
        std::fs::write(m.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    });
    assert_clean_failure(&output, "not a valid safetensors file");
    let output = run_broken(|m| std::fs::write(m.join("model.safetensors"), b"garbage").unwrap());
    assert_clean_failure(&output, "not a valid safetensors file");
    let output = run_broken(|m| {
        let text = std::fs::read_to_string(m.join("config.json")).unwrap().replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
        std::fs::write(m.join("config.json"), text).unwrap();
    });
    assert_clean_failure(&output, "does not hold bert weights");
}

#[test]
fn non_finite_weights_are_reported_not_drawn() {
    let output = run_broken(|m| {
        // Poison one query weight with NaN: every map of layer 0 turns NaN.
        let path = m.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
        let mut tensors: std::collections::HashMap<String, candle_core::Tensor> = tensors;
        let name = "encoder.layer.0.attention.self.query.weight";
        let key = if tensors.contains_key(name) { name.to_string() } else { format!("bert.{name}") };
        let weight = &tensors[&key];
        let mut values: Vec<f32> = weight.flatten_all().unwrap().to_vec1().unwrap();
        values[0] = f32::NAN;
        let poisoned = candle_core::Tensor::from_vec(values, weight.dims(), &candle_core::Device::Cpu).unwrap();
        tensors.insert(key, poisoned);
        candle_core::safetensors::save(&tensors, &path).unwrap();
    });
    assert_clean_failure(&output, "not finite");
}

#[test]
fn help_teaches_the_main_use() {
    let help = |args: &[&str]| {
        let output = attnmap(args, &[]);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let top = help(&["--help"]);
    for needle in ["\"The WhirlyGigs arrived broken\" --layer 5 --head 3", "check before you conclude", "Layers and heads count from 0", "show", "dump", "diff", "info"] {
        assert!(top.contains(needle), "attnmap --help lacks {needle:?}:\n{top}");
    }
    assert!(top.contains("Examples:"), "{top}");
    for command in ["show", "dump", "diff", "info"] {
        let text = help(&[command, "--help"]);
        assert!(text.contains(&format!("Usage: attnmap {command}")), "{command}:\n{text}");
    }
    // diff teaches by example, and says how it judges and what it exits with.
    let diff = help(&["diff", "--help"]);
    for needle in ["Examples:", "--aggregate", "worst", "mean", "--fail-above", "Exit status", "2 on error"] {
        assert!(diff.contains(needle), "attnmap diff --help lacks {needle:?}:\n{diff}");
    }
    // `attnmap TEXT` means show: its --help is show's.
    assert!(help(&["some text", "--help"]).contains("--layer"));
}

/// Ctrl-C in the middle of a dump leaves nothing: no DIR, no hidden work folder.
/// The test hook holds the finished staging folder before it is renamed into place, so
/// the signal lands mid-run every time (the old test skipped its assertion when it was late).
#[test]
fn interrupted_dump_leaves_nothing_behind() {
    for existing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dump");
        if existing {
            // With --force an old dump is replaced only once the new one is complete: it must survive.
            std::fs::create_dir(&out).unwrap();
            std::fs::write(out.join("manifest.json"), "old").unwrap();
        }
        let model = tiny_bert_dir();
        let mut args = vec!["-q", "dump", "the cat sat on the mat", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
        if existing {
            args.push("--force");
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
            .args(&args)
            .env("ATTNMAP_TEST_PAUSE_BEFORE_PUBLISH_MS", "60000")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the staging folder holds the finished dump (its manifest is written last).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let staged = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .find(|e| e.file_name().to_string_lossy().starts_with(".dump.attnmap-") && e.path().join("manifest.json").is_file())
                .map(|e| e.path())
        };
        let staging = loop {
            if let Some(path) = staged() {
                break path;
            }
            assert!(child.try_wait().unwrap().is_none(), "attnmap exited before it was interrupted");
            assert!(std::time::Instant::now() < deadline, "the dump never reached its staging folder");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(staging.join("attention.npy").is_file() && staging.join("grid.png").is_file());
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
        assert!(stderr(&output).contains("interrupted; nothing was written"), "{}", stderr(&output));
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        if existing {
            assert_eq!(left, vec!["dump".to_string()], "only the old dump may remain");
            assert_eq!(std::fs::read_to_string(out.join("manifest.json")).unwrap(), "old", "the old dump is untouched");
        } else {
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }
}

#[test]
fn a_tokenizer_that_does_not_fit_the_weights_is_named() {
    // MiniLM's tokenizer (30522 ids) with the tiny BERT's weights (a few hundred).
    let output = crate::helpers::run_broken_model(&tiny_bert_dir(), |m| {
        std::fs::copy(minilm_dir().join("tokenizer.json"), m.join("tokenizer.json")).unwrap();
    });
    assert_clean_failure(&output, "outside this model's vocabulary");
}

/// pytorch_model.bin (read as data) and a sharded model.safetensors.index.json
/// give exactly the maps of the single model.safetensors.
#[test]
fn every_weight_layout_gives_the_same_maps() {
    let npy = |model: &Path| {
        let output = attnmap(&["the cat sat on the mat", "-l", "1", "-H", "2", "--model", model.to_str().unwrap(), "-o", "-", "--format", "npy"], &[]);
        assert!(output.status.success(), "{}: {}", model.display(), stderr(&output));
        output.stdout
    };
    let single = npy(&tiny_bert_dir());
    assert_eq!(npy(&fixtures().join("tiny-bert-pth")), single, "pytorch_model.bin");

    // Split the weights over two shards with an index, as save_pretrained does for big models.
    let dir = tempfile::tempdir().unwrap();
    let sharded = dir.path();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_bert_dir().join(file), sharded.join(file)).unwrap();
    }
    let tensors = candle_core::safetensors::load(tiny_bert_dir().join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)] {
        let subset: std::collections::HashMap<String, candle_core::Tensor> = part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&subset, sharded.join(shard)).unwrap();
        for name in part {
            weight_map.insert((*name).clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(npy(sharded), single, "sharded safetensors");

    // A shard named in the index but missing is one clear line.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", sharded.to_str().unwrap(), "-o", "-"], &[]);
    assert_clean_failure(&output, "model-00002-of-00002.safetensors");
}

/// A BERT with one segment type cannot take --pair: say so instead of failing inside.
#[test]
fn pair_on_a_single_segment_model_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path();
    std::fs::copy(tiny_bert_dir().join("tokenizer.json"), model.join("tokenizer.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(tiny_bert_dir().join("config.json")).unwrap()).unwrap();
    config["type_vocab_size"] = 1.into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let mut tensors = candle_core::safetensors::load(tiny_bert_dir().join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let name = tensors.keys().find(|k| k.ends_with("token_type_embeddings.weight")).unwrap().clone();
    let one_row = tensors[&name].narrow(0, 0, 1).unwrap().contiguous().unwrap();
    tensors.insert(name, one_row);
    candle_core::safetensors::save(&tensors, model.join("model.safetensors")).unwrap();
    let model = model.to_str().unwrap();
    let single = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", model, "-o", "-"], &[]);
    assert!(single.status.success(), "{}", stderr(&single));
    let pair = attnmap(&["the cat", "--pair", "the dog", "-l", "0", "-H", "0", "--model", model, "-o", "-"], &[]);
    assert_clean_failure(&pair, "leave out --pair");
}

/// --colormap and --scale change the picture; an unknown colormap is a usage error.
#[test]
fn style_flags_change_the_picture() {
    let model = model_arg(&tiny_bert_dir());
    let png = |extra: &[&str]| {
        let output = attnmap(&[&["the cat sat", "-l", "0", "-H", "1", "--model", &model, "-o", "-"], extra].concat(), &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        output.stdout
    };
    let default = png(&[]);
    assert_eq!(default, png(&["--colormap", "viridis", "--scale", "auto"]), "the defaults are viridis and auto");
    assert_ne!(default, png(&["--colormap", "magma"]));
    assert_ne!(default, png(&["--scale", "fixed"]));
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", &model, "--colormap", "rainbow"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("viridis"), "the error lists the choices: {}", stderr(&output));
}

/// `dump --scale fixed` colours grid.png on 0..1, as it does heads/*.png: the grid equals
/// the library's grid of the dump's own maps with every tile on 0..1, and differs from auto.
#[test]
fn dump_grid_follows_scale() {
    use attnmap::render::{grid_png, Colormap, GridOptions, Mask, Scale};
    let dir = tempfile::tempdir().unwrap();
    let model = model_arg(&tiny_bert_dir());
    let dump = |name: &str, scale: &str| {
        let out = dir.path().join(name);
        let output = attnmap(&["-q", "dump", "the cat sat on the mat", "--model", &model, "--out", out.to_str().unwrap(), "--scale", scale], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        out
    };
    let (fixed, auto) = (dump("fixed", "fixed"), dump("auto", "auto"));
    let (shape, values) = read_npy_f32(&std::fs::read(fixed.join("attention.npy")).unwrap()).unwrap();
    let title = format!("tiny-bert · every head · {} tokens", shape[2]);
    let expected = grid_png(
        &values,
        shape[0],
        shape[1],
        shape[2],
        &GridOptions {
            title: &title,
            colormap: Colormap::Viridis,
            scale_per_head: false,
            fixed_scale: Some(Scale::Range { min: 0.0, max: 1.0 }),
            mask: Mask::None,
            ..GridOptions::default()
        },
    )
    .unwrap();
    assert!(std::fs::read(fixed.join("grid.png")).unwrap() == expected, "grid.png is not drawn on 0..1");
    assert!(std::fs::read(auto.join("grid.png")).unwrap() != expected);
    // The head pictures follow --scale too.
    assert!(std::fs::read(fixed.join("heads/L00_H00.png")).unwrap() != std::fs::read(auto.join("heads/L00_H00.png")).unwrap());
}
