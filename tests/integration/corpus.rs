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
