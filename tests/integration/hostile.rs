//! Hostile files, devices, signals and huge inputs (issue 12): a crafted file
//! is an error, never a panic or a huge allocation; writing never replaces what
//! the user pointed at with something else; every failure is one error line.

use std::path::Path;

use crate::helpers::{assert_clean_failure, attnmap, fixtures, run_broken_model, stderr, tiny_bert_dir};

/// A safetensors file from a header (JSON) and a data section.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// The regression the issue carries: a shape whose byte count wraps to 4 (2^62 + 1 elements
/// of 4 bytes) must be refused, not allocated ("capacity overflow", exit 101 before).
#[test]
fn safetensors_shape_that_wraps_is_an_error() {
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 4])).unwrap();
    });
    assert_clean_failure(&output, "does not take");
}

#[test]
fn safetensors_overlapping_or_outside_tensors_are_errors() {
    // Many tensors over the same bytes would each be allocated: refused before any is read.
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "overlap");
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551610,18446744073709551615]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "truncated");
    let output = run_broken_model(&tiny_bert_dir(), |model| {
        let header = r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#;
        std::fs::write(model.join("model.safetensors"), safetensors(header, &[0; 8])).unwrap();
    });
    assert_clean_failure(&output, "unknown dtype");
}

/// Config counts that would size loops and tables before any weight is compared with them.
#[test]
fn absurd_config_counts_are_refused() {
    for (field, value) in [("num_hidden_layers", "4611686018427387905"), ("hidden_size", "1099511627776"), ("num_attention_heads", "1000000")] {
        let output = run_broken_model(&tiny_bert_dir(), |model| {
            let config = std::fs::read_to_string(model.join("config.json")).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
            json[field] = serde_json::Value::Number(value.parse().unwrap());
            std::fs::write(model.join("config.json"), json.to_string()).unwrap();
        });
        assert_clean_failure(&output, "config.json");
    }
    let llama = fixtures().join("tiny-llama");
    let output = run_broken_model(&llama, |model| {
        let config = std::fs::read_to_string(model.join("config.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
        json["num_hidden_layers"] = serde_json::json!(1u64 << 60);
        std::fs::write(model.join("config.json"), json.to_string()).unwrap();
    });
    assert_clean_failure(&output, "num_hidden_layers");
}

/// A dump's attention.npy whose shape multiplies past usize must not wrap to the data length.
#[test]
fn dump_with_a_wrapping_npy_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let dump = fixtures().join("diff/old");
    let crafted = dir.path().join("crafted");
    std::fs::create_dir(&crafted).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dump.join("manifest.json")).unwrap()).unwrap();
    let seq = manifest["seq_len"].as_u64().unwrap();
    manifest["layers"] = serde_json::json!(1u64 << 62);
    manifest["heads"] = serde_json::json!(4);
    std::fs::write(crafted.join("manifest.json"), manifest.to_string()).unwrap();
    // 2^62 * 4 * seq * seq * 4 bytes wraps to 0 modulo 2^64.
    let shape = format!("({}, 4, {seq}, {seq})", 1u64 << 62);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    std::fs::write(crafted.join("attention.npy"), npy).unwrap();
    let output = attnmap(&["diff", dump.to_str().unwrap(), crafted.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "attention.npy");
    // A dump whose attention.npy is a device is refused, not read forever.
    std::fs::remove_file(crafted.join("attention.npy")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", crafted.join("attention.npy")).unwrap();
    std::fs::write(crafted.join("manifest.json"), std::fs::read(dump.join("manifest.json")).unwrap()).unwrap();
    let output = attnmap(&["diff", dump.to_str().unwrap(), crafted.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "not a regular file");
}


fn tiny() -> String {
    tiny_bert_dir().to_str().unwrap().to_string()
}

/// `show` the tiny model's head 0 of layer 0 as .npy into `out`.
fn show_npy(out: &Path) -> std::process::Output {
    attnmap(&["the cat sat", "-l", "0", "-H", "0", "--model", &tiny(), "--format", "npy", "-o", out.to_str().unwrap()], &[])
}

fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// Devices are written, never replaced: as root, a rename over /dev/null would
/// make it a regular file for the whole system.
#[test]
fn output_to_a_device_writes_it_and_leaves_it_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let output = show_npy(Path::new("/dev/null"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(file_type(Path::new("/dev/null")).is_char_device());
    // /dev/full: the write fails, one error line, still a device.
    let output = show_npy(Path::new("/dev/full"));
    assert_clean_failure(&output, "/dev/full");
    assert!(file_type(Path::new("/dev/full")).is_char_device());
}

#[test]
fn output_to_a_fifo_is_written_through_it() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.npy");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let output = show_npy(&fifo);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = reader.join().unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"), "the reader gets the .npy");
    assert!(file_type(&fifo).is_fifo(), "the FIFO stays a FIFO");
}

#[test]
fn output_through_a_symlink_writes_its_target_and_keeps_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.npy");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink("real.npy", &link).unwrap();
    let output = show_npy(&link);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(file_type(&link).is_symlink(), "the link stays a link");
    assert!(std::fs::read(&real).unwrap().starts_with(b"\x93NUMPY"), "its target is written");
    assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600, "the file keeps its mode");
    // A dangling link names the file to create.
    let dangling = dir.path().join("dangling.npy");
    std::os::unix::fs::symlink("made.npy", &dangling).unwrap();
    assert!(show_npy(&dangling).status.success());
    assert!(file_type(&dangling).is_symlink() && dir.path().join("made.npy").is_file());
    // A loop is a loop, not "missing".
    let a = dir.path().join("a.npy");
    std::os::unix::fs::symlink("b.npy", &a).unwrap();
    std::os::unix::fs::symlink("a.npy", dir.path().join("b.npy")).unwrap();
    assert_clean_failure(&show_npy(&a), "loop");
}

#[test]
fn output_naming_a_folder_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", &tiny(), "-o", dir.path().to_str().unwrap()], &[]);
    assert_clean_failure(&output, "is a folder");
}

#[test]
fn dump_refuses_the_current_folder_and_read_only_folders() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("work");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("keep.txt"), b"mine").unwrap();
    for out in [".", "..", "/", "./", "../work"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
            .args(["dump", "the cat", "--model", &tiny(), "--out", out, "--force"])
            .current_dir(&inner)
            .output()
            .unwrap();
        assert_clean_failure(&output, "current folder");
    }
    assert_eq!(std::fs::read(inner.join("keep.txt")).unwrap(), b"mine");
    let read_only = dir.path().join("ro");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let output = attnmap(&["dump", "the cat", "--model", &tiny(), "--out", read_only.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "read-only");
    assert_eq!(std::fs::metadata(&read_only).unwrap().permissions().mode() & 0o777, 0o555);
    // A private folder that is replaced stays private.
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let output = attnmap(&["dump", "the cat", "--model", &tiny(), "--out", private.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700);
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_live_runs_lock_refuses_a_second_dump_and_a_dead_ones_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("maps");
    let lock = dir.path().join(".maps.attnmap-lock");
    // A live owner: a child that sleeps.
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(&lock, sleeper.id().to_string()).unwrap();
    let output = attnmap(&["dump", "the cat", "--model", &tiny(), "--out", out.to_str().unwrap()], &[]);
    assert_clean_failure(&output, &format!("pid {}", sleeper.id()));
    assert!(!out.exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // Its owner gone, the lock is stale: the next dump takes it, and removes the
    // staging folders killed runs left (never a live run's).
    let abandoned = dir.path().join(format!(".maps.attnmap-{}-Xy12", dead_pid()));
    std::fs::create_dir_all(abandoned.join("heads")).unwrap();
    let live = dir.path().join(format!(".other.attnmap-{}-Ab34", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    let output = attnmap(&["dump", "the cat", "--model", &tiny(), "--out", out.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.join("manifest.json").is_file());
    assert!(!abandoned.exists(), "a killed run's staging folder is removed");
    assert!(live.exists(), "a live run's staging folder is kept");
    assert!(!lock.exists(), "the lock goes with the run");
}

/// Two dumps into the same new folder at once: without --force one wins and the other
/// fails naming the situation; with --force the last complete one wins whole.
#[test]
fn concurrent_dumps_never_mix() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = |out: &Path, text: &str, force: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"));
        command.args(["dump", text, "--model", &tiny(), "--out", out.to_str().unwrap()]);
        if force {
            command.arg("--force");
        }
        command.stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    for round in 0..3 {
        let out = dir.path().join(format!("plain{round}"));
        let (a, b) = (spawn(&out, "the cat sat", false), spawn(&out, "a dog ran off quickly", false));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let codes = [a.status.code(), b.status.code()];
        assert!(codes.contains(&Some(0)) && codes.contains(&Some(2)), "one wins, one fails: {codes:?} {} {}", stderr(&a), stderr(&b));
        let loser = if a.status.code() == Some(2) { &a } else { &b };
        assert_clean_failure(loser, "--out");
        check_whole_dump(&out);
    }
    for round in 0..3 {
        let out = dir.path().join(format!("forced{round}"));
        let (a, b) = (spawn(&out, "the cat sat", true), spawn(&out, "a dog ran off quickly", true));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success() && b.status.success(), "{} {}", stderr(&a), stderr(&b));
        check_whole_dump(&out);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "nothing hidden is left: {leftovers:?}");
}

/// Every file the manifest lists is there, and attention.npy has the manifest's shape.
fn check_whole_dump(out: &Path) {
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        assert!(out.join(file.as_str().unwrap()).is_file(), "{file} is missing");
    }
    let (shape, _) = attnmap::output::read_npy_f32(&std::fs::read(out.join("attention.npy")).unwrap()).unwrap();
    let seq = manifest["seq_len"].as_u64().unwrap() as usize;
    assert_eq!(shape[2..], [seq, seq], "attention.npy belongs to this manifest");
    assert_eq!(manifest["ids"].as_array().unwrap().len(), seq);
}

/// SIGTERM is handled like Ctrl-C: exit 130 and the message, not a silent death.
#[test]
fn sigterm_is_handled_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("text");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = dir.path().join("maps");
    // Reading a FIFO nobody writes blocks: the run is reliably in progress.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
        .args(["dump", "--file", fifo.to_str().unwrap(), "--model", &tiny(), "--out", out.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal only once the handler is installed (SIGTERM caught in /proc's SigCgt mask),
    // so a slow start on a loaded machine cannot turn this into a default-action death.
    let caught = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok()).is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
    };
    for _ in 0..3000 {
        if caught(child.id()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(caught(child.id()), "attnmap never installed its SIGTERM handler");
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(stderr(&output).contains("interrupted"));
    assert!(!out.exists());
}

#[test]
fn binary_and_non_utf8_input_is_refused() {
    let output = attnmap(&["show", "--file", "/dev/zero", "-l", "0", "-H", "0", "--model", &tiny()], &[]);
    assert_clean_failure(&output, "NUL byte at offset 0");
    let dir = tempfile::tempdir().unwrap();
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 au lait").unwrap();
    let output = attnmap(&["show", "--file", latin1.to_str().unwrap(), "-l", "0", "-H", "0", "--model", &tiny()], &[]);
    assert_clean_failure(&output, "not UTF-8 text (invalid byte at offset 3)");
}

/// A 48 MB file keeps exactly the tokens its first few kilobytes give (truncation keeps
/// 40 here), and is tokenized only that far (the run used to take 50 s and 6 GB).
#[test]
fn a_huge_text_file_is_tokenized_only_as_far_as_truncation_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let sentence = "The WhirlyGigs arrived broken, and support never answered my three emails. ";
    let huge = dir.path().join("huge.txt");
    let mut text = String::with_capacity(48 << 20);
    while text.len() < 48 << 20 {
        text.push_str(sentence);
    }
    std::fs::write(&huge, &text).unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, &text[..sentence.len() * 10]).unwrap();
    let npy = |file: &Path| {
        let output = attnmap(&["show", "--file", file.to_str().unwrap(), "-l", "1", "-H", "2", "--model", &tiny(), "-o", "-", "--format", "npy"], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        let err = stderr(&output);
        (output.stdout, err)
    };
    let (huge_map, huge_err) = npy(&huge);
    let (short_map, _) = npy(&short);
    assert_eq!(huge_map, short_map, "the kept tokens do not depend on where reading stopped");
    assert!(huge_err.contains("only its first 16 MiB are read") && huge_err.contains("more than"), "{huge_err}");
}

/// In-process: the prefix tokenization keeps exactly the ids the whole text gives.
#[test]
fn prefix_tokenization_equals_whole_text_tokenization() {
    use tokenizers::{Tokenizer, TruncationParams};
    for (model, max_len) in [("tiny-bert", 40), ("tiny-gpt2", 32), ("tiny-llama", 48), ("tiny-xlm-roberta", 32)] {
        let path = fixtures().join(model).join("tokenizer.json");
        let ours = attnmap::tokenize::TextTokenizer::from_file(&path, max_len).unwrap();
        let mut reference = Tokenizer::from_file(&path).unwrap();
        reference.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).unwrap();
        // Long words, a long unbroken run past the first cut, accents and CJK.
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("wörd{i} 本日 "));
        }
        let long_run = format!("{} {}", "x".repeat(3000), text);
        for text in [&text, &long_run] {
            let encoded = ours.encode(text, None).unwrap();
            assert_eq!(encoded.ids, reference.encode(text.as_str(), true).unwrap().get_ids(), "{model}");
            assert!(encoded.text.len() < text.len(), "{model}: only a prefix is tokenized");
            assert!(encoded.dropped > 0);
        }
        // Pairs (encoders only), against tokenizers' own pair truncation on texts short
        // enough for it (it pairs every overflowing piece with every other).
        if model == "tiny-gpt2" || model == "tiny-llama" {
            continue;
        }
        let cut = |t: &str, n: usize| t.chars().take(n).collect::<String>();
        let (some, more, run) = (cut(&text, 1500), cut(&text, 400), cut(&long_run, 3100));
        for (first, second) in [("a short text", "a short pair"), (more.as_str(), "a short pair"), (some.as_str(), run.as_str()), (more.as_str(), some.as_str()), (text.as_str(), "a short pair"), ("a short text", text.as_str())] {
            let pair = ours.encode(first, Some(second)).unwrap();
            let expected = reference.encode((first, second), true).unwrap();
            assert_eq!((&pair.ids[..], &pair.type_ids[..]), (expected.get_ids(), expected.get_type_ids()), "{model} pair");
            let sequences: Vec<Option<u8>> = expected.get_sequence_ids().iter().map(|s| s.map(|s| s as u8)).collect();
            assert_eq!(pair.sequence, sequences, "{model} {} {}", first.len(), second.len());
        }
        // Two long texts finish (they used to take minutes), keeping half the room each.
        let both = ours.encode(&text, Some(&long_run)).unwrap();
        assert_eq!(both.len(), max_len);
    }
}

#[test]
fn pair_on_a_decoder_is_refused() {
    let gpt2 = fixtures().join("tiny-gpt2");
    let output = attnmap(&["the cat", "--pair", "sat down", "-l", "0", "-H", "0", "--model", gpt2.to_str().unwrap(), "-o", "-", "--format", "npy"], &[]);
    assert_clean_failure(&output, "decoder");
}

#[test]
fn pair_truncation_warning_names_the_text_that_lost_tokens() {
    let long = "one two three four five six seven eight nine ten ".repeat(6);
    let output = attnmap(&[&long, "--pair", "short one", "-l", "0", "-H", "0", "--model", &tiny(), "-o", "-", "--format", "npy"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("were dropped from the end of the text and 0 from the end of --pair"), "{err}");
    let output = attnmap(&["short one", "--pair", &long, "-l", "0", "-H", "0", "--model", &tiny(), "-o", "-", "--format", "npy"], &[]);
    assert!(stderr(&output).contains(" 0 were dropped from the end of the text and "), "{}", stderr(&output));
}

/// Files that disagree with each other load, with a warning naming both numbers.
#[test]
fn weights_or_tokenizer_that_disagree_with_the_config_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| {
        let model = dir.path().join(name);
        std::fs::create_dir(&model).unwrap();
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::copy(from.join(file), model.join(file)).unwrap();
        }
        model
    };
    let fewer = copy(&tiny_bert_dir(), "fewer-layers");
    let config = std::fs::read_to_string(fewer.join("config.json")).unwrap().replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
    std::fs::write(fewer.join("config.json"), config).unwrap();
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "-o", "-", "--format", "npy", "--model", fewer.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("the weights hold 2 layers but") && stderr(&output).contains("describes 1"), "{}", stderr(&output));
    let other_tokenizer = copy(&fixtures().join("tiny-llama"), "other-tokenizer");
    std::fs::copy(tiny_bert_dir().join("tokenizer.json"), other_tokenizer.join("tokenizer.json")).unwrap();
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "-o", "-", "--format", "npy", "--model", other_tokenizer.to_str().unwrap()], &[]);
    assert!(stderr(&output).contains("the tokenizer has 256 tokens but the model's vocabulary has 480"), "{}", stderr(&output));
    // Matching files say nothing.
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "-o", "-", "--format", "npy", "--model", &tiny()], &[]);
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
}

/// Usage errors are one line in the house form, the last line of stderr.
#[test]
fn usage_errors_are_one_line() {
    let cases: [(&[&str], &str); 4] = [
        (&["the cat", "--frobnicate"], "unexpected argument '--frobnicate'"),
        (&["the cat", "--layer", "-1", "--head", "0"], "negative"),
        (&["dump", "the cat"], "--out"),
        (&["the cat", "--colormap", "rainbow", "-l", "0", "-H", "0"], "viridis"),
    ];
    for (args, needle) in cases {
        let output = attnmap(args, &[]);
        assert_clean_failure(&output, needle);
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.lines().last().unwrap().starts_with("attnmap: error: ") && err.contains("--help"), "{err}");
    }
    // A failing run's error is the last line, after what it said before.
    let output = attnmap(&["the cat", "-l", "9", "-H", "0", "--model", &tiny(), "-o", "-"], &[]);
    assert_clean_failure(&output, "layer 9");
    assert!(stderr(&output).lines().last().unwrap().starts_with("attnmap: error: "));
}

/// A non-UTF-8 argument is reported as such, not as an unknown subcommand; a TEXT equal to
/// a subcommand name followed by show's own flags is drawn as text.
#[test]
fn odd_arguments_get_accurate_messages() {
    use std::os::unix::ffi::OsStrExt;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_attnmap"))
        .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
        .args(["-l", "0", "-H", "0", "--model", &tiny()])
        .output()
        .unwrap();
    assert_clean_failure(&output, "UTF-8");
    assert!(!stderr(&output).contains("subcommand"), "{}", stderr(&output));
    let output = attnmap(&["info", "-l", "0", "-H", "0", "--model", &tiny(), "-o", "-", "--format", "json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["tokens"].as_array().unwrap().len(), 3, "[CLS] info [SEP]: {json}");
}

#[test]
fn symlink_loops_in_a_model_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::os::unix::fs::symlink("config.json", model.join("config.json")).unwrap();
    let output = attnmap(&["info", "--model", model.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "loop");
    let looped = dir.path().join("looped");
    std::os::unix::fs::symlink("looped", &looped).unwrap();
    let output = attnmap(&["info", "--model", looped.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "leads nowhere");
}

/// A small seeded generator (xorshift64*): the same mutations on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One seeded mutation of a file's bytes. JSON files also get structural edits (numbers set
/// to 0 / max / wrapping values, keys dropped or duplicated); binary files get their
/// length fields (the first 8 bytes of safetensors, GGUF's counts) set to such values.
fn mutate(bytes: &[u8], json: bool, rng: &mut Seeded) -> (String, Vec<u8>) {
    let mut out = bytes.to_vec();
    let extremes: [u64; 6] = [0, 1, u64::MAX, u64::MAX / 2 + 2, 1 << 62, u32::MAX as u64 + 1];
    match rng.below(if json { 7 } else { 5 }) {
        0 => {
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            (format!("{flips} bit flips"), out)
        }
        1 => {
            let len = rng.below(out.len());
            out.truncate(len);
            (format!("truncated to {len}"), out)
        }
        2 if !json => {
            // A length or count field: the header length, or any aligned 8 bytes in the first kilobytes.
            let at = if rng.below(2) == 0 { 0 } else { rng.below(out.len().min(4096) / 8) * 8 };
            let value = extremes[rng.below(extremes.len())];
            let end = (at + 8).min(out.len());
            out[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            (format!("u64 at {at} = {value}"), out)
        }
        3 if !json => {
            // A byte run repeated (duplicated data) in the header region.
            let at = rng.below(out.len().min(8192));
            let len = 1 + rng.below(64);
            let run: Vec<u8> = out[at..(at + len).min(out.len())].to_vec();
            out.splice(at..at, run);
            (format!("{len} bytes duplicated at {at}"), out)
        }
        4 if !json => {
            let at = rng.below(out.len().min(8192));
            let len = 1 + rng.below(64);
            out.drain(at..(at + len).min(out.len()));
            (format!("{len} bytes dropped at {at}"), out)
        }
        kind => {
            // JSON: numbers to extremes, keys dropped or duplicated (on the text, so
            // duplicates survive), or random structural characters.
            let text = String::from_utf8_lossy(bytes).into_owned();
            let numbers: Vec<(usize, usize)> = {
                let b = text.as_bytes();
                let mut spans = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    if b[i].is_ascii_digit() && i > 0 && matches!(b[i - 1], b':' | b' ' | b'[' | b',') {
                        let start = i;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        spans.push((start, i));
                    }
                    i += 1;
                }
                spans
            };
            let keys: Vec<usize> = text.match_indices("\":").map(|(i, _)| i).collect();
            match kind % 3 {
                0 if !numbers.is_empty() => {
                    let (start, end) = numbers[rng.below(numbers.len())];
                    let value = ["0", "-1", "18446744073709551615", "4611686018427387905", "1e308", "4294967296", "65537"][rng.below(7)];
                    (format!("number at {start} = {value}"), format!("{}{value}{}", &text[..start], &text[end..]).into_bytes())
                }
                1 if !keys.is_empty() => {
                    // Drop a key: from its opening quote to the next comma.
                    let colon = keys[rng.below(keys.len())];
                    let start = text[..colon].rfind('"').unwrap_or(colon);
                    let end = text[colon..].find(',').map_or(text.len(), |i| colon + i + 1);
                    (format!("key at {start} dropped"), format!("{}{}", &text[..start], &text[end..]).into_bytes())
                }
                _ if !keys.is_empty() => {
                    // Duplicate a "key": value pair in place, with another value.
                    let colon = keys[rng.below(keys.len())];
                    let start = text[..colon].rfind('"').unwrap_or(colon);
                    let key = &text[start..colon + 2];
                    let value = ["0", "null", "[]", "{}", "\"x\"", "99999999999"][rng.below(6)];
                    (format!("key at {start} duplicated"), format!("{}{key}{value},{}", &text[..start], &text[start..]).into_bytes())
                }
                _ => {
                    let at = rng.below(out.len());
                    out[at] = b"{}[],:\"\\0"[rng.below(9)];
                    (format!("structural byte at {at}"), out)
                }
            }
        }
    }
}

/// How one in-process run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ending {
    Ok,
    Error,
    Panic,
    Hang,
}

/// Run `work` on its own thread: a panic that escapes the library, or a run past 20 s, is
/// reported as such (an allocation failure would abort the whole test binary instead).
fn ending(work: impl FnOnce() -> bool + Send + 'static) -> Ending {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let _ = send.send(match result {
            Ok(true) => Ending::Ok,
            Ok(false) => Ending::Error,
            Err(_) => Ending::Panic,
        });
    });
    receive.recv_timeout(std::time::Duration::from_secs(20)).unwrap_or(Ending::Hang)
}

/// Load a model folder (or GGUF file) and, if it loads, run a short text through it.
fn load_and_run(model: std::path::PathBuf) -> bool {
    let env = attnmap::source::HubEnv::from_env().unwrap();
    let Ok(files) = attnmap::source::resolve(model.to_str().unwrap(), "main", &env) else { return false };
    let Ok(loaded) = attnmap::model::load(&files) else { return false };
    let Ok(input) = loaded.tokenizer.encode("the cat sat on the mat", None) else { return false };
    attnmap::Capture::run(loaded.model.as_ref(), &input, None, &[]).is_ok()
}

/// The mutation suite: a few hundred seeded mutations of every kind of file attnmap reads
/// (safetensors, pytorch_model.bin, GGUF header, tokenizer.json, config.json, a dump's attention.npy and
/// manifest.json), each run in-process through the library (and a sample through the
/// binary): every run ends in success or an error — never a panic, a hang or an abort —
/// and a failing binary run prints one error line and writes nothing.
#[test]
fn mutated_files_end_in_success_or_one_error() {
    let mut rng = Seeded(0x5eed_0f_a77e);
    let dir = tempfile::tempdir().unwrap();
    let mut tally: std::collections::BTreeMap<(&str, Ending), usize> = Default::default();
    let mut failures = Vec::new();
    let bert = tiny_bert_dir();
    let llama = fixtures().join("tiny-llama");
    // A GGUF's header region (metadata, vocabulary, tensor directory): the part a crafted file attacks.
    let gguf_path = crate::helpers::repo_root().join(".models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let gguf_head = {
        let mut head = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::open(&gguf_path).unwrap(), 3 << 20), &mut head).unwrap();
        head
    };
    let targets: Vec<(&str, std::path::PathBuf, &str, usize)> = vec![
        ("safetensors", bert.clone(), "model.safetensors", 80),
        ("tokenizer.json", bert.clone(), "tokenizer.json", 60),
        ("config.json", bert.clone(), "config.json", 60),
        ("llama config.json", llama.clone(), "config.json", 40),
        ("llama tokenizer.json", llama.clone(), "tokenizer.json", 30),
        ("gguf", std::path::PathBuf::new(), "model.gguf", 40),
        ("pytorch_model.bin", fixtures().join("tiny-bert-pth"), "pytorch_model.bin", 40),
    ];
    for (kind, source, file, count) in targets {
        for index in 0..count {
            let original = if kind == "gguf" { gguf_head.clone() } else { std::fs::read(source.join(file)).unwrap() };
            let (what, bytes) = mutate(&original, file.ends_with(".json"), &mut rng);
            let model = dir.path().join(format!("{kind}-{index}").replace(' ', "_"));
            std::fs::create_dir(&model).unwrap();
            let target = if kind == "gguf" {
                model.join(file)
            } else {
                let weights = if kind == "pytorch_model.bin" { "pytorch_model.bin" } else { "model.safetensors" };
                for other in ["config.json", "tokenizer.json", weights] {
                    std::fs::copy(source.join(other), model.join(other)).unwrap();
                }
                model.join(file)
            };
            std::fs::write(&target, &bytes).unwrap();
            let run_on = if kind == "gguf" { target.clone() } else { model.clone() };
            let end = ending(move || load_and_run(run_on));
            *tally.entry((kind, end)).or_default() += 1;
            if matches!(end, Ending::Panic | Ending::Hang) {
                failures.push(format!("{kind} #{index} ({what}): {end:?}"));
            }
            // A sample through the binary: exit 0 or 2, one error line, nothing written on failure.
            if index % 10 == 0 {
                let out = dir.path().join(format!("out-{kind}-{index}.npy").replace(' ', "_"));
                let path = if kind == "gguf" { target.clone() } else { model.clone() };
                let output = attnmap(&["the cat sat", "-l", "0", "-H", "0", "--model", path.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
                match output.status.code() {
                    Some(0) => *tally.entry(("binary", Ending::Ok)).or_default() += 1,
                    Some(2) => {
                        *tally.entry(("binary", Ending::Error)).or_default() += 1;
                        let err = stderr(&output);
                        if err.lines().filter(|l| l.starts_with("attnmap: error:")).count() != 1 || !err.lines().last().unwrap_or("").starts_with("attnmap: error:") || out.exists() {
                            failures.push(format!("binary {kind} #{index} ({what}): {err}"));
                        }
                    }
                    other => failures.push(format!("binary {kind} #{index} ({what}): exit {other:?}: {}", stderr(&output))),
                }
            }
        }
    }
    // A dump's files: attention.npy in-process, manifest.json through `attnmap diff`.
    let dump = fixtures().join("diff/old");
    let npy = std::fs::read(dump.join("attention.npy")).unwrap();
    for index in 0..60 {
        let (what, bytes) = mutate(&npy, false, &mut rng);
        let end = ending(move || attnmap::output::read_npy_f32(&bytes).is_ok());
        *tally.entry(("attention.npy", end)).or_default() += 1;
        if matches!(end, Ending::Panic | Ending::Hang) {
            failures.push(format!("attention.npy #{index} ({what}): {end:?}"));
        }
    }
    let manifest = std::fs::read(dump.join("manifest.json")).unwrap();
    for index in 0..30 {
        let (what, bytes) = mutate(&manifest, true, &mut rng);
        let copy = dir.path().join(format!("dump-{index}"));
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(dump.join("attention.npy"), copy.join("attention.npy")).unwrap();
        std::fs::write(copy.join("manifest.json"), bytes).unwrap();
        let output = attnmap(&["diff", dump.to_str().unwrap(), copy.to_str().unwrap()], &[]);
        let end = match output.status.code() {
            Some(0 | 1) => Ending::Ok,
            Some(2) => Ending::Error,
            _ => Ending::Panic,
        };
        *tally.entry(("manifest.json (binary)", end)).or_default() += 1;
        let err = stderr(&output);
        if end == Ending::Panic || (end == Ending::Error && err.lines().filter(|l| l.starts_with("attnmap: error:")).count() != 1) {
            failures.push(format!("manifest.json #{index} ({what}): {:?} {err}", output.status));
        }
    }
    let total: usize = tally.values().sum();
    eprintln!("mutation suite: {total} runs");
    for ((kind, end), count) in &tally {
        eprintln!("  {kind:<24} {end:?}: {count}");
    }
    assert!(failures.is_empty(), "{} runs ended badly:\n{}", failures.len(), failures.join("\n"));
}
