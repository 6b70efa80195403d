//! Shared test helpers: fixture paths, cached models, running the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use attnmap::model::{self, Loaded};
use attnmap::source::{self, HubEnv};
use candle_core::Tensor;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// The real all-MiniLM-L6-v2, fetched by scripts/fetch-models.sh.
pub fn minilm_dir() -> PathBuf {
    model_dir("minilm")
}

/// The fine-tuned descendant of MiniLM (sre-embedding-model).
#[allow(dead_code)]
pub fn sre_dir() -> PathBuf {
    model_dir("sre")
}

fn model_dir(name: &str) -> PathBuf {
    let dir = repo_root().join(".models").join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-models.sh (or scripts/test.sh) first",
        dir.display()
    );
    dir
}

pub fn tiny_bert_dir() -> PathBuf {
    fixtures().join("tiny-bert")
}

/// Load a model folder once per test binary.
pub fn loaded(dir: &Path) -> &'static Loaded {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<PathBuf, &'static Loaded>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap();
    map.entry(dir.to_path_buf()).or_insert_with(|| {
        let env = HubEnv::from_env().unwrap();
        let files = source::resolve(dir.to_str().unwrap(), "main", &env).unwrap();
        Box::leak(Box::new(model::load(&files).unwrap()))
    })
}

/// One reference case from tests/fixtures/cases.json.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Case {
    pub model: String,
    pub case: String,
    pub text: String,
    pub pair: Option<String>,
    pub seq_len: usize,
    pub layers: usize,
    pub heads: usize,
    pub full: bool,
    pub truncated_from: Option<usize>,
    pub file: String,
    /// Where the model lives, relative to the repo root (a folder or a .gguf);
    /// defaults to tests/fixtures/<model>.
    #[serde(default)]
    pub model_path: Option<String>,
}

/// Every case of tests/fixtures/cases.json and tests/fixtures/cases-*.json.
pub fn cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("cases") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let more: Vec<Case> = serde_json::from_value(json["cases"].clone()).unwrap();
        cases.extend(more);
    }
    cases
}

/// The cases of one fixture model (at least one must exist).
pub fn cases_of(model: &str) -> Vec<Case> {
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.model == model).collect();
    assert!(!cases.is_empty(), "no fixture cases for {model}");
    cases
}

pub fn case_model_dir(case: &Case) -> PathBuf {
    match (case.model.as_str(), &case.model_path) {
        (_, Some(path)) => {
            let path = repo_root().join(path);
            assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh", path.display());
            path
        }
        ("minilm", None) => minilm_dir(),
        (name, None) => fixtures().join(name),
    }
}

/// The reference tensors of a case.
pub fn reference(case: &Case) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(&case.file), &candle_core::Device::Cpu).unwrap()
}

/// Run the attnmap binary with extra environment; HF cache isolated per call site.
pub fn attnmap(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = attnmap_command(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// The attnmap binary with `args`, not started yet.
pub fn attnmap_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attnmap"));
    // Hermetic: the caller's own Hub settings must not leak in (HF_HUB_CACHE would
    // override a test's HF_HOME, a real HF_TOKEN would be sent to the test server).
    for name in ["HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        command.env_remove(name);
    }
    command.args(args);
    command
}

/// Run the attnmap binary, assert it succeeded, and return its own peak RSS in bytes.
///
/// wait4 reports one child's ru_maxrss, but Linux carries into it the high-water RSS of
/// the memory the child ran in before exec (fs/exec.c: exec_mmap), which for a child
/// spawned from this test process is this process's own peak (posix_spawn shares it), or
/// its current RSS (fork copies it): hundreds of MiB while other tests run beside it, as
/// much as a dump. So the binary is spawned from a fresh, small process, this test
/// binary re-run with only [`peak_rss_probe`], which reports the child's peak; what it
/// adds is its own few MiB.
pub fn peak_rss(args: &[&str]) -> u64 {
    let probe = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helpers::peak_rss_probe", "--ignored", "--nocapture", "--test-threads=1"])
        .env(RSS_PROBE_ARGS, serde_json::to_string(args).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&probe.stdout);
    // The harness may print it after "test helpers::peak_rss_probe ... " on the same line.
    let peak = stdout.split("peak_rss_bytes=").nth(1).and_then(|rest| rest.split_whitespace().next());
    match (probe.status.success(), peak) {
        (true, Some(peak)) => peak.trim().parse().unwrap(),
        _ => panic!("measuring attnmap {args:?} failed: {stdout}{}", String::from_utf8_lossy(&probe.stderr)),
    }
}

/// The arguments [`peak_rss_probe`] runs attnmap with, as a JSON list.
const RSS_PROBE_ARGS: &str = "ATTNMAP_TEST_RSS_PROBE_ARGS";

/// Not a test: the fresh process [`peak_rss`] measures through. Runs attnmap with the
/// arguments in ATTNMAP_TEST_RSS_PROBE_ARGS, asserts it succeeded and prints its peak RSS
/// (wait4 is this child's alone, unlike RUSAGE_CHILDREN). Without the variable it does nothing.
#[test]
#[ignore = "run by helpers::peak_rss"]
fn peak_rss_probe() {
    let Ok(args) = std::env::var(RSS_PROBE_ARGS) else { return };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let child = attnmap_command(&args).stdout(std::process::Stdio::null()).stderr(stderr_file.reopen().unwrap()).spawn().unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet waited for; status and usage are filled by the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    let err = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "attnmap {args:?} failed: {err}");
    // ru_maxrss is in KiB on Linux, in bytes on macOS.
    println!("peak_rss_bytes={}", usage.ru_maxrss as u64 * if cfg!(target_os = "macos") { 1 } else { 1024 });
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Copy a model folder's config, tokenizer and weights into a temp folder, let
/// `spoil` break one of them, and run `show` on it (no output may be written).
pub fn run_broken_model(model_dir: &Path, spoil: impl FnOnce(&Path)) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir.join(file), model.join(file)).unwrap();
    }
    spoil(&model);
    let out = dir.path().join("out.png");
    let output = attnmap(&["the cat", "-l", "0", "-H", "0", "--model", model.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert!(!out.exists(), "no output may be written on failure");
    output
}

/// Assert a bad-input run: exit 2, exactly one line on stderr mentioning `needle`, no panic.
pub fn assert_clean_failure(output: &Output, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "expected exit 2, stderr: {err}");
    assert!(err.contains(needle), "stderr should mention {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic: {err}");
    let error_lines = err.lines().filter(|l| l.starts_with("attnmap: error:")).count();
    assert_eq!(error_lines, 1, "one error line expected: {err}");
}

/// Dump `text` three times (RAYON_NUM_THREADS=1, default, default again), assert the
/// attention.npy and grid.png bytes are equal, and return the folders (kept by the TempDir).
pub fn dumps_across_thread_counts(model: &str, text: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut dumps = Vec::new();
    for (name, threads) in [("one", Some("1")), ("default", None), ("again", None)] {
        let out = dir.path().join(name);
        let envs: Vec<(&str, &str)> = threads.map(|t| vec![("RAYON_NUM_THREADS", t)]).unwrap_or_default();
        let output = attnmap(&["dump", text, "--out", out.to_str().unwrap(), "--model", model], &envs);
        assert!(output.status.success(), "{}", stderr(&output));
        dumps.push(out);
    }
    let first = std::fs::read(dumps[0].join("attention.npy")).unwrap();
    for other in &dumps[1..] {
        assert!(first == std::fs::read(other.join("attention.npy")).unwrap(), "attention.npy differs across runs");
        assert!(std::fs::read(dumps[0].join("grid.png")).unwrap() == std::fs::read(other.join("grid.png")).unwrap());
    }
    (dir, dumps)
}
