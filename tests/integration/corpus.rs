//! `dump --texts FILE --out DIR [--shard K/N]`: a corpus of dumps on the tiny model. Shards
//! (written together, or apart and copied together) must give the unsharded corpus byte for
//! byte; a rerun keeps complete dumps and computes only the missing ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::helpers::{assert_clean_failure, attnmap, stderr, tiny_bert_dir};

/// Seven texts: plain lines, a blank line (not counted), a JSON line with a pair.
const PROBES: &str = "the cat sat on the mat\nA dog barked loudly\n\n{\"text\": \"first part\", \"pair\": \"second part\"}\nbirds fly south\nthe the the\nrain fell all night\nit is what it is\n";

fn probes(dir: &Path) -> PathBuf {
    let path = dir.join("probes.txt");
    std::fs::write(&path, PROBES).unwrap();
    path
}

fn dump_corpus(texts: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let model = tiny_bert_dir();
    let mut args = vec!["dump", "--texts", texts.to_str().unwrap(), "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    attnmap(&args, &[])
}

/// Every file under `dir` (hidden ones too: a leftover lock or staging folder is a difference), by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

fn assert_same_corpus(expected: &Path, actual: &Path) {
    let (expected, actual) = (files(expected), files(actual));
    assert_eq!(expected.keys().collect::<Vec<_>>(), actual.keys().collect::<Vec<_>>(), "the same files");
    for (path, bytes) in &expected {
        assert!(bytes == &actual[path], "{} differs", path.display());
    }
}

#[test]
fn three_shards_equal_the_unsharded_corpus_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let whole = dir.path().join("whole");
    let output = dump_corpus(&texts, &whole, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let index = std::fs::read_to_string(whole.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), 7, "{index}");
    let lines: Vec<serde_json::Value> = index.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[2]["text"], "first part");
    assert_eq!(lines[2]["pair"], "second part");
    assert_eq!(lines[2]["folder"], "00003");
    assert_eq!(lines[6]["line"], 7);
    for line in &lines {
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join(line["folder"].as_str().unwrap()).join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["text"], line["text"]);
        assert_eq!(manifest["seq_len"], line["tokens"]);
        assert!(manifest["source"].is_null(), "a corpus names no folder of this machine");
    }

    // Three shards at once into one folder: they share the index under its lock.
    let shared = dir.path().join("shared");
    let runs: Vec<_> = (0..3)
        .map(|k| {
            let (texts, shared) = (texts.clone(), shared.clone());
            std::thread::spawn(move || dump_corpus(&texts, &shared, &["--shard", &format!("{k}/3")]))
        })
        .collect();
    for run in runs {
        let output = run.join().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_same_corpus(&whole, &shared);

    // Three shards apart, their folders copied together; a rerun (nothing to compute) rebuilds the index.
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    for k in 0..3 {
        let apart = dir.path().join(format!("apart{k}"));
        let output = dump_corpus(&texts, &apart, &["--shard", &format!("{k}/3")]);
        assert!(output.status.success(), "{}", stderr(&output));
        for entry in std::fs::read_dir(&apart).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let to = merged.join(path.file_name().unwrap());
                std::fs::create_dir(&to).unwrap();
                for (file, bytes) in files(&path) {
                    std::fs::create_dir_all(to.join(&file).parent().unwrap()).unwrap();
                    std::fs::write(to.join(&file), bytes).unwrap();
                }
            }
        }
    }
    let output = dump_corpus(&texts, &merged, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("wrote 0 dumps, kept 7"), "{}", stderr(&output));
    assert_same_corpus(&whole, &merged);
}

#[test]
fn a_rerun_recomputes_only_the_missing_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let out = dir.path().join("corpus");
    let output = dump_corpus(&texts, &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let before = files(&out);
    let mtime = |folder: &str| std::fs::metadata(out.join(folder).join("attention.npy")).unwrap().modified().unwrap();
    let kept_mtime = mtime("00005");
    std::fs::remove_dir_all(out.join("00002")).unwrap();

    let output = dump_corpus(&texts, &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("wrote 1 dump, kept 6 complete ones"), "{}", stderr(&output));
    assert_eq!(mtime("00005"), kept_mtime, "a complete dump is kept, not rewritten");
    assert_eq!(files(&out), before, "the rewritten dump and the index are as they were");

    // --force recomputes every text of the run.
    let output = dump_corpus(&texts, &out, &["--force"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("wrote 7 dumps, kept 0"), "{}", stderr(&output));
    assert_eq!(files(&out), before);
}

#[test]
fn a_folder_of_another_text_or_not_a_corpus_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let out = dir.path().join("corpus");
    assert!(dump_corpus(&texts, &out, &[]).status.success());
    // The probe file changed under the corpus: its first text is another one now.
    std::fs::write(&texts, PROBES.replacen("the cat", "a cat", 1)).unwrap();
    let output = dump_corpus(&texts, &out, &[]);
    assert_clean_failure(&output, "--force");
    assert!(stderr(&output).contains("another text"), "{}", stderr(&output));
    let output = dump_corpus(&texts, &out, &["--force", "--shard", "0/7"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert!(index.lines().next().unwrap().contains("\"a cat sat"), "{index}");

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let output = dump_corpus(&texts, &other, extra);
        assert_clean_failure(&output, "not an attnmap corpus");
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1, "nothing written into it");
    }
}

#[test]
fn bad_shards_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let out = dir.path().join("corpus");
    for (shard, needle) in [("3/3", "K must be below N"), ("1/0", "at least 1"), ("x", "no '/'"), ("-1/2", "K is not"), ("0/b", "N is not"), ("", "no '/'")] {
        let output = dump_corpus(&texts, &out, &[&format!("--shard={shard}")]);
        assert_clean_failure(&output, needle);
        assert!(!out.exists(), "--shard {shard:?} wrote something");
    }
    let model = tiny_bert_dir();
    let output = attnmap(&["dump", "the cat", "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap(), "--shard", "0/2"], &[]);
    assert_clean_failure(&output, "--texts");
    assert!(!out.exists());
}

// ---- Compute once, analyse many times: heads, find and diff on a corpus ----

/// `attnmap ARGS`, which must succeed; its stdout.
fn stdout_of(args: &[&str]) -> String {
    let output = attnmap(args, &[]);
    assert!(output.status.success(), "attnmap {args:?}: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The probes dumped by `model` into `dir/name`, whole or as three shards written apart.
fn corpus_of(dir: &Path, texts: &Path, model: &Path, name: &str, shards: bool) -> PathBuf {
    let out = dir.join(name);
    let runs: Vec<Vec<String>> = if shards { (0..3).map(|k| vec!["--shard".to_string(), format!("{k}/3")]).collect() } else { vec![vec![]] };
    for extra in runs {
        let mut args = vec!["dump", "--texts", texts.to_str().unwrap(), "--out", out.to_str().unwrap(), "--model", model.to_str().unwrap(), "-q"];
        args.extend(extra.iter().map(String::as_str));
        let output = attnmap(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    out
}

#[test]
fn heads_and_find_on_a_corpus_equal_the_model_run() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let model = tiny_bert_dir();
    let (texts_arg, model_arg) = (texts.to_str().unwrap(), model.to_str().unwrap());
    let whole = corpus_of(dir.path(), &texts, &model, "whole", false);
    let sharded = corpus_of(dir.path(), &texts, &model, "sharded", true);
    // The same f32 maps reach the same statistics in the same order: the outputs are equal byte for byte.
    for words in [&[][..], &["--words"][..]] {
        let mut from_model = vec!["heads", "--texts", texts_arg, "--model", model_arg, "--json"];
        from_model.extend_from_slice(words);
        let expected = stdout_of(&from_model);
        let parsed: serde_json::Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(parsed["texts"], 7, "{expected}");
        for corpus in [&whole, &sharded] {
            let mut from_corpus = vec!["heads", "--corpus", corpus.to_str().unwrap(), "--json"];
            from_corpus.extend_from_slice(words);
            assert_eq!(stdout_of(&from_corpus), expected, "heads {words:?} on {}", corpus.display());
        }
    }
    // The keys null draws per trial from --seed: p, q and the passing heads are the same.
    for (pattern, extra) in [("previous-token", &["--seed", "7"][..]), ("duplicate-token", &["--words", "--trials", "300", "--threshold", "0.2"][..])] {
        let mut from_model = vec!["find", pattern, "--texts", texts_arg, "--model", model_arg, "--json"];
        from_model.extend_from_slice(extra);
        let expected = stdout_of(&from_model);
        let parsed: serde_json::Value = serde_json::from_str(&expected).unwrap();
        assert!(parsed["heads"].as_array().is_some_and(|h| !h.is_empty()), "{expected}");
        for corpus in [&whole, &sharded] {
            let mut from_corpus = vec!["find", pattern, "--corpus", corpus.to_str().unwrap(), "--json"];
            from_corpus.extend_from_slice(extra);
            assert_eq!(stdout_of(&from_corpus), expected, "find {pattern} on {}", corpus.display());
        }
    }
    // A decoder (causal maps, a BOS token or none, byte-level words).
    let decoder = crate::helpers::fixtures().join("tiny-gpt2");
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "the cat sat on the mat\nA dog, barked loudly!\nthe the the\n").unwrap();
    let corpus = corpus_of(dir.path(), &plain, &decoder, "decoder", true);
    for args in [&["heads", "--words", "--json"][..], &["find", "previous-token", "--json", "--trials", "200"][..]] {
        let mut from_model = args.to_vec();
        from_model.extend(["--texts", plain.to_str().unwrap(), "--model", decoder.to_str().unwrap()]);
        let mut from_corpus = args.to_vec();
        from_corpus.extend(["--corpus", corpus.to_str().unwrap()]);
        assert_eq!(stdout_of(&from_corpus), stdout_of(&from_model), "{args:?} on a decoder");
    }
    // A single dump folder is a corpus of one text.
    let one = dir.path().join("one");
    stdout_of(&["dump", "the cat sat on the mat", "--out", one.to_str().unwrap(), "--model", model_arg, "-q"]);
    assert_eq!(stdout_of(&["heads", "--corpus", one.to_str().unwrap(), "--json"]), stdout_of(&["heads", "the cat sat on the mat", "--model", model_arg, "--json"]));
}

#[test]
fn find_pairs_on_a_corpus_of_the_pairs_file_equals_the_model_run() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"text\": \"the cat sat because it was tired\", \"pairs\": [{\"from\": \"it\", \"to\": \"cat\"}]}\n\
         {\"text\": \"a dog ran and it barked\", \"pair\": \"the dog is loud\", \"pairs\": [{\"from\": \"it\", \"to\": [2, 5]}]}\n",
    )
    .unwrap();
    let model = tiny_bert_dir();
    // dump --texts reads a pairs file's "text" and "pair" and leaves its "pairs" be.
    let corpus = corpus_of(dir.path(), &pairs, &model, "coref", false);
    let expected = stdout_of(&["find", "--pairs", pairs.to_str().unwrap(), "--model", model.to_str().unwrap(), "--json", "--trials", "200"]);
    assert_eq!(stdout_of(&["find", "--pairs", pairs.to_str().unwrap(), "--corpus", corpus.to_str().unwrap(), "--json", "--trials", "200"]), expected);

    // A corpus of other texts is refused, naming the line.
    let texts = probes(dir.path());
    let other = corpus_of(dir.path(), &texts, &model, "other", false);
    let output = attnmap(&["find", "--pairs", pairs.to_str().unwrap(), "--corpus", other.to_str().unwrap()], &[]);
    assert_clean_failure(&output, "holds 2 texts but the corpus has 7");
}

/// The report without what names the two sides (paths differ between the two ways of running).
fn without_labels(json: &str) -> serde_json::Value {
    let mut report: serde_json::Value = serde_json::from_str(json).unwrap();
    for side in ["old", "new"] {
        report.as_object_mut().unwrap().remove(side);
    }
    report
}

#[test]
fn diff_of_two_corpora_equals_the_model_against_model_diff() {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("probes.txt");
    std::fs::write(&texts, "The cat sat on the mat.\nThe deploy failed because the disk was full.\n{\"text\": \"restart the pod\", \"pair\": \"the node is healthy\"}\n").unwrap();
    let (minilm, sre) = (crate::helpers::minilm_dir(), crate::helpers::sre_dir());
    let old = corpus_of(dir.path(), &texts, &minilm, "minilm", false);
    let new = corpus_of(dir.path(), &texts, &sre, "sre", true);
    for extra in [&[][..], &["--metric", "max_abs", "--aggregate", "mean"][..]] {
        let mut by_models = vec!["diff", "--model", minilm.to_str().unwrap(), "--against", sre.to_str().unwrap(), "--texts", texts.to_str().unwrap(), "--json"];
        by_models.extend_from_slice(extra);
        let mut by_corpora = vec!["diff", old.to_str().unwrap(), new.to_str().unwrap(), "--json"];
        by_corpora.extend_from_slice(extra);
        let (expected, actual) = (attnmap(&by_models, &[]), attnmap(&by_corpora, &[]));
        // A fine-tune moves every head: both fail the default threshold 0, with exit 1.
        assert_eq!(expected.status.code(), Some(1), "{}", stderr(&expected));
        assert_eq!(actual.status.code(), Some(1), "{}", stderr(&actual));
        let (expected, actual) = (without_labels(&String::from_utf8_lossy(&expected.stdout)), without_labels(&String::from_utf8_lossy(&actual.stdout)));
        assert_eq!(expected["texts"].as_array().map(Vec::len), Some(3));
        assert_eq!(actual, expected, "diff {extra:?}: the worst text, head and every value");
    }
}

#[test]
fn an_incomplete_damaged_or_mismatched_corpus_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let texts = probes(dir.path());
    let model = tiny_bert_dir();
    let good = corpus_of(dir.path(), &texts, &model, "good", false);
    let copy = |name: &str| {
        let to = dir.path().join(name);
        for (file, bytes) in files(&good) {
            std::fs::create_dir_all(to.join(&file).parent().unwrap()).unwrap();
            std::fs::write(to.join(&file), bytes).unwrap();
        }
        to
    };
    let heads = |corpus: &Path| attnmap(&["heads", "--corpus", corpus.to_str().unwrap()], &[]);
    let index_without = |corpus: &Path, line: usize| {
        let index = std::fs::read_to_string(corpus.join("index.jsonl")).unwrap();
        let kept: String = index.lines().filter(|l| !l.contains(&format!("\"line\":{line},"))).map(|l| format!("{l}\n")).collect();
        std::fs::write(corpus.join("index.jsonl"), kept).unwrap();
    };

    // A shard that never ran: texts missing in the middle and at the end.
    let partial = corpus_of(dir.path(), &texts, &model, "partial", false);
    std::fs::remove_dir_all(partial.join("00002")).unwrap();
    std::fs::remove_dir_all(partial.join("00007")).unwrap();
    index_without(&partial, 2);
    index_without(&partial, 7);
    assert_clean_failure(&heads(&partial), "texts 2, 7 of 7 are missing");
    // Only the first shard of three.
    let first_shard = dir.path().join("first-shard");
    stdout_of(&["dump", "--texts", texts.to_str().unwrap(), "--out", first_shard.to_str().unwrap(), "--model", model.to_str().unwrap(), "--shard", "0/3", "-q"]);
    assert_clean_failure(&heads(&first_shard), "texts 2, 3, 5, 6 of 7 are missing");
    // An index line whose folder is gone; a folder without its manifest (unfinished).
    let gone = copy("gone");
    std::fs::remove_dir_all(gone.join("00004")).unwrap();
    assert_clean_failure(&heads(&gone), "lists text 4 but");
    let unfinished = copy("unfinished");
    std::fs::remove_file(unfinished.join("00003/manifest.json")).unwrap();
    assert_clean_failure(&heads(&unfinished), "00003 has no manifest.json");
    // Shards copied together without the rerun that re-indexes them.
    let stale = copy("stale");
    index_without(&stale, 5);
    assert_clean_failure(&heads(&stale), "does not list 00005");
    // Damaged arrays: cut short, or a weight that is not a softmax's.
    let cut = copy("cut");
    let npy = cut.join("00006/attention.npy");
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() - 4]).unwrap();
    assert_clean_failure(&heads(&cut), "00006: attention.npy");
    let nan = copy("nan");
    let npy = nan.join("00001/attention.npy");
    let mut bytes = std::fs::read(&npy).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&npy, bytes).unwrap();
    for command in [&["heads"][..], &["find", "self"][..]] {
        let mut args = command.to_vec();
        args.extend(["--corpus", nan.to_str().unwrap()]);
        assert_clean_failure(&attnmap(&args, &[]), "is NaN");
    }
    // A dump from before the manifest carried what heads and find read.
    let old = copy("old");
    let manifest_path = old.join("00001/manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("word_ids");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let output = heads(&old);
    assert_clean_failure(&output, "make it again with this attnmap");
    assert!(stderr(&output).contains("\"word_ids\""), "{}", stderr(&output));

    // diff: other texts, other counts, a corpus against one dump, other tokens.
    let other_texts = dir.path().join("other.txt");
    std::fs::write(&other_texts, PROBES.replacen("the cat", "a cat", 1)).unwrap();
    let other = corpus_of(dir.path(), &other_texts, &model, "other", false);
    let diff = |old: &Path, new: &Path| attnmap(&["diff", old.to_str().unwrap(), new.to_str().unwrap()], &[]);
    assert_clean_failure(&diff(&good, &other), "text 1 of");
    assert_clean_failure(&diff(&good, &first_shard), "missing");
    assert_clean_failure(&diff(&good, &good.join("00001")), "is a corpus");
    let retokenized = copy("retokenized");
    let manifest_path = retokenized.join("00002/manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["ids"][1] = serde_json::json!(7);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    assert_clean_failure(&diff(&good, &retokenized), "tokenize text 2 of 7 differently");
    assert_clean_failure(&diff(&cut, &good), "00006");

    // Contradictory flags: one line each, before anything is read.
    let corpus = good.to_str().unwrap();
    for (args, needle) in [
        (&["heads", "--corpus", corpus, "--model", "x"][..], "--model"),
        (&["heads", "--corpus", corpus, "the cat"][..], "TEXT"),
        (&["heads", "--corpus", corpus, "--texts", "probes.txt"][..], "--texts"),
        (&["find", "self", "--corpus", corpus, "--repeat-random", "5"][..], "--repeat-random"),
        (&["find", "self", "--corpus", corpus, "--null", "shuffle"][..], "--null shuffle"),
        (&["heads", "--corpus", dir.path().join("none").to_str().unwrap()][..], "no such folder"),
        (&["heads", "--corpus", texts.to_str().unwrap()][..], "not a folder"),
    ] {
        assert_clean_failure(&attnmap(args, &[]), needle);
    }
}
