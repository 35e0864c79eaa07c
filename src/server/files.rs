//! Files written whole: the wormhole state's snapshots (`--wormhole-state`) and the ACME
//! account key and certificates (`--acme-cache`).
//!
//! Both hold secrets or names, and both are read back after a crash, so both are written
//! the same way: to a temporary name beside the file (the file's name with `.tmp` added, so
//! never the file itself), created afresh (a leftover or a planted link there is removed,
//! never followed) with mode 0600, synced, renamed over the file, and the directory synced.
//! A crash leaves the old file or the new one, never a mix.

use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The temporary name of a new file: the file's name with `.tmp` added.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a
/// mix: a fresh temporary file beside it, fsync, rename over, fsync of the directory.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary(path);
    // A leftover of a crash, or something planted: a link is removed, not followed.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_name_is_never_the_file() {
        for name in ["state", "state.json", "state.tmp", "dir/x.tmp", ".tmp"] {
            let path = Path::new(name);
            assert_ne!(temporary(path), path, "{name}");
            assert!(temporary(path).to_string_lossy().ends_with(".tmp"));
        }
    }

    #[test]
    fn a_replaced_file_is_private_and_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("duet-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, b"old").unwrap();
        // Something planted at the temporary name is removed, its target left alone.
        let target = dir.join("target");
        std::fs::write(&target, b"untouched").unwrap();
        std::os::unix::fs::symlink(&target, temporary(&path)).unwrap();
        replace(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
