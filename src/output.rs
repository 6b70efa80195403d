//! Where bytes go: files written atomically (temp file + rename, so a crash
//! never leaves half a file), stdout, and the small numeric formats (.npy, in [`npy`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod npy;

pub use npy::{npy_f32, read_npy_f32};

/// The folder a path lives in; "." for a bare file name.
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Check, before any work is done, that `path` can be written: its folder exists
/// and it is not itself a folder. Returns the folder.
pub fn check_target_file(path: &Path) -> Result<PathBuf> {
    let parent = parent_of(path);
    if !parent.is_dir() {
        return Err(Error::output(path, format!("the folder {} does not exist; create it first or choose another path", parent.display())));
    }
    if path.is_dir() {
        return Err(Error::output(path, "is a folder; give a file name such as map.png"));
    }
    Ok(parent)
}

/// Write `bytes` to `path` atomically: the folder must exist; the file appears whole or not at all.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = check_target_file(path)?;
    let unwritable = |e: std::io::Error| Error::output(path, format!("cannot be written ({e}); choose a folder you can write to"));
    let mut tmp = tempfile::Builder::new().prefix(".attnmap-").suffix(".tmp").tempfile_in(&parent).map_err(unwritable)?;
    tmp.write_all(bytes).map_err(unwritable)?;
    make_readable(tmp.as_file()).map_err(unwritable)?;
    tmp.as_file().sync_all().map_err(unwritable)?;
    tmp.persist(path).map_err(|e| unwritable(e.error))?;
    Ok(())
}

/// Before any work: refuse a non-empty DIR without --force and a missing parent; returns the parent.
pub fn check_target_dir(target: &Path, force: bool) -> Result<PathBuf> {
    let parent = parent_of(target);
    if !parent.is_dir() {
        return Err(Error::output(target, format!("its parent folder {} does not exist; create it first", parent.display())));
    }
    if target.exists() {
        if !target.is_dir() {
            return Err(Error::output(target, "exists and is not a folder; choose another --out"));
        }
        let non_empty = fs::read_dir(target).map_err(|e| Error::output(target, e))?.next().is_some();
        if non_empty && !force {
            return Err(Error::output(target, "exists and is not empty; choose another --out, or pass --force to replace it"));
        }
    }
    Ok(parent)
}

/// An output folder built as a hidden sibling of its target and renamed into
/// place when complete, so an interrupted run never leaves a half folder.
pub struct StagedDir {
    staging: tempfile::TempDir,
    target: PathBuf,
}

/// Staging folders in progress, removed by the Ctrl-C handler so an
/// interrupted run leaves nothing behind, not even its hidden work folder.
static IN_PROGRESS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Install the Ctrl-C handler (once, from main): remove staging folders, exit 130.
pub fn clean_up_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(dirs) = IN_PROGRESS.lock() {
            for dir in dirs.iter() {
                // Worker threads may still be writing into it: move it away
                // first so their next file fails, then remove it.
                let doomed = dir.with_extension("interrupted");
                let target = if fs::rename(dir, &doomed).is_ok() { doomed } else { dir.clone() };
                for _ in 0..5 {
                    if fs::remove_dir_all(&target).is_ok() || !target.exists() {
                        break;
                    }
                }
            }
        }
        eprintln!("attnmap: interrupted; nothing was written");
        std::process::exit(130);
    });
}

fn track(dir: &Path, in_progress: bool) {
    if let Ok(mut dirs) = IN_PROGRESS.lock() {
        dirs.retain(|d| d != dir);
        if in_progress {
            dirs.push(dir.to_path_buf());
        }
    }
}

impl StagedDir {
    /// Start building `target` inside `parent` (see [`check_target_dir`]).
    pub fn new(target: &Path, parent: &Path) -> Result<Self> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.attnmap-"))
            .tempdir_in(parent)
            .map_err(|e| Error::output(target, format!("cannot create a folder beside it ({e}); choose a folder you can write to")))?;
        track(staging.path(), true);
        make_folder_readable(staging.path()).map_err(|e| Error::output(target, e))?;
        Ok(Self { staging, target: target.to_path_buf() })
    }

    /// Where to write the folder's files meanwhile.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Move the finished folder into place; an old folder is removed only after the new one is there.
    pub fn publish(self) -> Result<()> {
        // For the tests only: hold the finished staging folder this many milliseconds, so a
        // test can interrupt a run at its most delicate moment for certain, not by luck.
        if let Some(ms) = std::env::var("ATTNMAP_TEST_PAUSE_BEFORE_PUBLISH_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let staging_path = self.staging.path().to_path_buf();
        let result = publish(self.staging, &self.target);
        track(&staging_path, false);
        result
    }
}

fn publish(staging: tempfile::TempDir, target: &Path) -> Result<()> {
    let fail = |e: std::io::Error| Error::output(target, format!("cannot move the finished folder into place: {e}"));
    let mut old = None;
    if target.exists() {
        let aside = target.with_file_name(format!(
            ".{}.attnmap-old-{}",
            target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            std::process::id()
        ));
        fs::rename(target, &aside).map_err(fail)?;
        old = Some(aside);
    }
    let built = staging.keep();
    if let Err(e) = fs::rename(&built, target) {
        if let Some(aside) = &old {
            let _ = fs::rename(aside, target);
        }
        let _ = fs::remove_dir_all(&built);
        return Err(fail(e));
    }
    if let Some(aside) = old {
        fs::remove_dir_all(&aside).map_err(|e| Error::output(&aside, format!("the new dump is in place but the old one could not be removed: {e}")))?;
    }
    Ok(())
}

/// Temp files are created private (0600); what we publish should read like any other file.
fn make_readable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    let _ = file;
    Ok(())
}

/// A folder made by `tempfile` (0700) opened up like `mkdir` would make it.
fn make_folder_readable(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let _ = dir;
    Ok(())
}

/// Write to stdout; a closed pipe is not an error (`attnmap … -o - | head` is fine).
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::output("<stdout>", e)),
        _ => Ok(()),
    }
}
