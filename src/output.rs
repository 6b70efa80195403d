//! Where bytes go: files written atomically (temp file + rename, so a crash
//! never leaves half a file), stdout, and the small numeric formats (.npy).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Encode a float32 C-order array as NumPy `.npy` (format 1.0).
pub fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The header (with magic, version and length) is padded to a multiple of 64 and ends in '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Read back a float32 `.npy` written by [`npy_f32`]: its shape and values.
pub fn read_npy_f32(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).ok_or("truncated .npy header")?)
        .map_err(|_| "the .npy header is not text")?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!("only little-endian float32 C-order arrays are read, got {}", header.trim()));
    }
    let shape_text = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or("the .npy header has no shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad .npy shape {shape_text}")))
        .collect::<std::result::Result<_, _>>()?;
    let data = &bytes[start + header_len..];
    // Checked: a crafted shape must not wrap around to the data's length.
    let needed = shape.iter().try_fold(4usize, |acc, &d| acc.checked_mul(d));
    if needed != Some(data.len()) {
        return Err(format!(
            "the .npy data has {} bytes but shape {shape:?} needs {}",
            data.len(),
            needed.map_or_else(|| "more than fit in memory".to_string(), |n| n.to_string())
        ));
    }
    Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

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
        let staging_path = self.staging.path().to_path_buf();
        let result = publish(self.staging, &self.target);
        track(&staging_path, false);
        result
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips_and_is_aligned() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 / 7.0).collect();
        let bytes = npy_f32(&[2, 3, 4], &values);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(read_npy_f32(&bytes).unwrap(), (vec![2, 3, 4], values));
        assert_eq!(read_npy_f32(&npy_f32(&[5], &[1.0; 5])).unwrap().0, vec![5]);
    }
}
