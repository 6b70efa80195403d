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
