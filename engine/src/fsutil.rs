//! Atomic file output: write to a temporary file in the target directory, then rename, so a
//! failure never leaves a partial file behind.

use crate::error::{display_path, PoseError};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. On error nothing is left at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PoseError> {
    let file = display_path(path);
    let err = |msg: String| PoseError::Write {
        file: file.clone(),
        msg,
    };
    if path.is_dir() {
        return Err(err("is a directory".into()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(err(format!("directory {} does not exist", dir.display())));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".skeleguide-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| err(e.to_string()))?;
    tmp.write_all(bytes).map_err(|e| err(e.to_string()))?;
    // The temporary file is created private (0600); give the result the permissions a plain
    // create would (or keep those of the file it replaces).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(e.to_string()))?;
    }
    tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
    tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
    Ok(())
}
