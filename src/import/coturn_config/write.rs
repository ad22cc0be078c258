//! Writing the results: each file through a temporary name and a rename,
//! created with its final mode (a secret is never readable by others,
//! not even for a moment).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// `path` with `.tmp-import` added (same folder, so the rename is atomic).
pub(crate) fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp-import");
    PathBuf::from(name)
}

/// Writes `text` to `temporary(path)` with `mode`.
pub(crate) fn to_temporary(path: &Path, text: &str, mode: u32) -> Result<PathBuf, String> {
    let tmp = temporary(path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", tmp.display())
        })?;
    Ok(tmp)
}

/// Moves a temporary file to `path`.
pub(crate) fn commit(tmp: &Path, path: &Path) -> Result<(), String> {
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn files_get_their_mode_from_the_start_and_replace_atomically() {
        let dir =
            std::env::temp_dir().join(format!("turnpike-import-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "old").unwrap();
        let tmp = to_temporary(&path, "new\n", 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        commit(&tmp, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
