//! Where bytes go: files written atomically (temp file + rename, so a crash
//! never leaves half a file), stdout, and the small numeric formats (.npy, in [`npy`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod npy;

pub use npy::{npy_f32, npy_header, read_npy_f32, NpyWriter};

/// Read a regular file whole, refusing devices and FIFOs (a link to /dev/zero would
/// otherwise be read until memory runs out).
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let metadata = fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    fs::read(path)
}

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
    let target = follow_links(path)?;
    let parent = parent_of(&target);
    if !parent.is_dir() {
        return Err(Error::output(path, format!("the folder {} does not exist; create it first or choose another path", parent.display())));
    }
    if target.is_dir() {
        return Err(Error::output(path, "is a folder; give a file name such as map.png"));
    }
    Ok(parent)
}

/// The path a chain of symbolic links ends at (which may not exist yet: a new file
/// is written where a dangling link points). A loop is an error, not "missing".
pub fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    // Linux gives up after 40 links (ELOOP); so do we.
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = fs::read_link(&current).map_err(|e| Error::output(path, e))?;
                current = if next.is_absolute() { next } else { parent_of(&current).join(next) };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::output(path, "is a symbolic link loop (or a chain of more than 40 links); point it at a file"))
}

/// Write `bytes` to `path`: the file appears whole or not at all. A regular file (or a
/// new path) is replaced atomically (temp file + rename) and keeps its mode; a device
/// or FIFO (/dev/null, a named pipe) is written directly, never replaced; a symbolic
/// link is followed to the file it names, and stays a link.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = check_target_file(path)?;
    let target = follow_links(path)?;
    let unwritable = |e: std::io::Error| Error::output(path, format!("cannot be written ({e}); choose a folder you can write to"));
    let existing = fs::metadata(&target).ok();
    if let Some(meta) = existing.as_ref().filter(|m| !m.is_file()) {
        let _ = meta;
        let mut file = fs::OpenOptions::new().write(true).open(&target).map_err(unwritable)?;
        return file.write_all(bytes).and_then(|_| file.flush()).map_err(unwritable);
    }
    let mut tmp = tempfile::Builder::new().prefix(".attnmap-").suffix(".tmp").tempfile_in(&parent).map_err(unwritable)?;
    tmp.write_all(bytes).map_err(unwritable)?;
    match &existing {
        Some(meta) => tmp.as_file().set_permissions(meta.permissions()).map_err(unwritable)?,
        None => make_readable(tmp.as_file()).map_err(unwritable)?,
    }
    tmp.as_file().sync_all().map_err(unwritable)?;
    tmp.persist(&target).map_err(|e| unwritable(e.error))?;
    Ok(())
}

/// Write a new file inside a [`StagedDir`]'s folder. No temp file, rename or fsync of
/// its own: the folder is hidden until [`StagedDir::publish`], which syncs it once, so
/// a dump of thousands of pictures pays one sync instead of one per file.
pub fn write_staged(path: &Path, bytes: &[u8]) -> Result<()> {
    let unwritable = |e: std::io::Error| Error::output(path, format!("cannot be written ({e}); is the disk full?"));
    let mut file = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(unwritable)?;
    file.write_all(bytes).map_err(unwritable)?;
    start_writeback(&file);
    Ok(())
}

/// Start writing a staged file to disk now, without waiting: the sync before the folder
/// is published ([`sync_tree`]) then finds most of it written, while the dump went on
/// computing (on a SmolLM2 dump that sync waited ~50 ms for its 65 MB at the end).
pub(crate) fn start_writeback(file: &fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open. A
        // failure only means the final sync does the work: nothing to report.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Flush a staged folder's files to disk before it is renamed into place, so a crash
/// never publishes a folder whose files are still empty. Linux syncs the file system
/// in one call; elsewhere each file is synced.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let folder = fs::File::open(dir)?;
        // SAFETY: syncfs takes any open descriptor of the file system; `folder` outlives the call.
        if unsafe { libc::syncfs(folder.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            fs::File::open(entry.path())?.sync_all()?;
        }
    }
    Ok(())
}

/// Before any work: refuse a non-empty DIR without --force and a missing parent; returns the parent.
pub fn check_target_dir(target: &Path, force: bool) -> Result<PathBuf> {
    let target = &follow_links(target)?;
    let parent = parent_of(target);
    if !parent.is_dir() {
        return Err(Error::output(target, format!("its parent folder {} does not exist; create it first", parent.display())));
    }
    // Replacing ".", ".." or "/" (or any folder holding the current one) cannot work and must not be tried.
    let names_a_folder_in_use = target.file_name().is_none()
        || matches!(target.components().next_back(), Some(std::path::Component::CurDir | std::path::Component::ParentDir | std::path::Component::RootDir))
        || match (fs::canonicalize(target), std::env::current_dir().and_then(fs::canonicalize)) {
            (Ok(target), Ok(cwd)) => cwd.starts_with(&target),
            _ => false,
        };
    if names_a_folder_in_use {
        return Err(Error::output(target, "is the current folder or one that holds it; give a new folder name such as maps/"));
    }
    if target.exists() {
        if !target.is_dir() {
            return Err(Error::output(target, "exists and is not a folder; choose another --out"));
        }
        let non_empty = fs::read_dir(target).map_err(|e| Error::output(target, e))?.next().is_some();
        if non_empty && !force {
            return Err(Error::output(target, "exists and is not empty; choose another --out, or pass --force to replace it"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(target).map_err(|e| Error::output(target, e))?.permissions().mode();
            if mode & 0o200 == 0 {
                return Err(Error::output(target, format!("is read-only (mode {:o}); make it writable (chmod u+w) or choose another --out", mode & 0o7777)));
            }
        }
    }
    Ok(parent)
}

/// An output folder built as a hidden sibling of its target and renamed into
/// place when complete, so an interrupted run never leaves a half folder.
///
/// The sibling is named `.{DIR}.attnmap-{pid}-XXXX`, and a lock file
/// `.{DIR}.attnmap-lock` holds the pid of the run writing DIR: a second run
/// into the same DIR is refused (or, with --force, waits and then replaces the
/// first one's result whole), and a later run removes what a killed run left.
pub struct StagedDir {
    staging: tempfile::TempDir,
    target: PathBuf,
    _lock: RunLock,
}

/// Staging folders in progress, removed by the Ctrl-C handler so an
/// interrupted run leaves nothing behind, not even its hidden work folder.
static IN_PROGRESS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Install the Ctrl-C and SIGTERM handler (once, from main): remove staging folders, exit 130.
pub fn clean_up_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(dirs) = IN_PROGRESS.lock() {
            for dir in dirs.iter() {
                // Worker threads may still be writing into it: move it away
                // first so their next file fails, then remove it.
                let mut doomed = dir.clone().into_os_string();
                doomed.push(".interrupted");
                let doomed = PathBuf::from(doomed);
                let target = if fs::rename(dir, &doomed).is_ok() { doomed } else { dir.clone() };
                for _ in 0..5 {
                    if fs::remove_dir_all(&target).is_ok() || !target.exists() {
                        break;
                    }
                }
                let _ = fs::remove_file(lock_path(dir));
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
    /// Start building `target` inside `parent` (see [`check_target_dir`]); refused while
    /// another live run is writing the same `target`.
    pub fn new(target: &Path, parent: &Path) -> Result<Self> {
        Self::create(target, parent, false)
    }

    /// As [`StagedDir::new`]; with `force`, wait for another run writing `target` to
    /// finish instead of failing, so the last complete run wins.
    pub fn create(target: &Path, parent: &Path, force: bool) -> Result<Self> {
        let target = &follow_links(target)?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        remove_abandoned(parent);
        let lock = RunLock::acquire(target, parent, &name, force)?;
        // Another run may have finished while this one computed.
        if !force && fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(Error::output(target, "exists and is not empty (another run wrote it meanwhile); choose another --out, or pass --force to replace it"));
        }
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.attnmap-{}-", std::process::id()))
            .tempdir_in(parent)
            .map_err(|e| Error::output(target, format!("cannot create a folder beside it ({e}); choose a folder you can write to")))?;
        track(staging.path(), true);
        make_folder_readable(staging.path()).map_err(|e| Error::output(target, e))?;
        Ok(Self { staging, target: target.to_path_buf(), _lock: lock })
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
        sync_tree(&staging_path).map_err(|e| Error::output(&self.target, format!("cannot be written ({e}); is the disk full?")))?;
        let result = publish(self.staging, &self.target);
        track(&staging_path, false);
        result
    }
}

/// Run `work` holding the lock of `target` (the one a [`StagedDir`] of it takes), waiting
/// for another run holding it: for a file several runs rewrite in turn (a corpus index).
pub fn with_lock<T>(target: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let _lock = RunLock::acquire(target, &parent_of(target), &name, true)?;
    work()
}

/// `.{DIR}.attnmap-lock` beside a staging folder or target named DIR.
fn lock_path(staging_or_target: &Path) -> PathBuf {
    let name = staging_or_target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir_name = match name.strip_prefix('.').and_then(|n| n.rsplit_once(".attnmap-")) {
        Some((dir_name, _)) => dir_name.to_string(),
        None => name,
    };
    parent_of(staging_or_target).join(format!(".{dir_name}.attnmap-lock"))
}

/// The lock file of one target folder, holding the owner's pid; removed on drop.
struct RunLock {
    path: PathBuf,
}

impl RunLock {
    fn acquire(target: &Path, parent: &Path, name: &str, wait: bool) -> Result<Self> {
        let path = parent.join(format!(".{name}.attnmap-lock"));
        let me = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(me.to_string().as_bytes()).map_err(|e| Error::output(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).ok().and_then(|text| text.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if pid != me && process_alive(pid) => {
                            if !wait {
                                return Err(Error::output(
                                    target,
                                    format!("another attnmap run (pid {pid}) is writing it now; wait for it to finish, choose another --out, or pass --force to replace its result when it is done"),
                                ));
                            }
                            if std::time::Instant::now() > deadline {
                                return Err(Error::output(target, format!("another attnmap run (pid {pid}) has been writing it for 10 minutes; try again later")));
                            }
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        // A run that is gone (or a lock being written this instant: checked again).
                        Some(_) => {
                            let _ = fs::remove_file(&path);
                        }
                        None => {
                            let young = fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() < 2);
                            if young {
                                std::thread::sleep(std::time::Duration::from_millis(20));
                            } else {
                                let _ = fs::remove_file(&path);
                            }
                        }
                    }
                }
                Err(e) => return Err(Error::output(target, format!("cannot create a lock file beside it ({e}); choose a folder you can write to"))),
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let mine = fs::read_to_string(&self.path).is_ok_and(|text| text.trim() == std::process::id().to_string());
        if mine {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: kill with signal 0 only checks that the process exists and may be signalled.
        let result = unsafe { libc::kill(pid, 0) };
        result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        // Without a cheap check, never treat a run as gone.
        let _ = pid;
        true
    }
}

/// Remove, from `parent`, the staging folders (and old folders set aside) of runs
/// that were killed (SIGKILL, a crash): their names carry the owner's pid, and only
/// those whose process is gone are touched, never a live run's.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, rest)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".attnmap-")) else { continue };
        let rest = rest.strip_prefix("old-").unwrap_or(rest);
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(pid) = digits.parse::<u32>() else { continue };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn publish(staging: tempfile::TempDir, target: &Path) -> Result<()> {
    let fail = |e: std::io::Error| Error::output(target, format!("cannot move the finished folder into place: {e}"));
    let mut old = None;
    if let Ok(meta) = fs::metadata(target) {
        // The folder that was there keeps its mode (a 0700 folder stays private).
        fs::set_permissions(staging.path(), meta.permissions()).map_err(fail)?;
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
