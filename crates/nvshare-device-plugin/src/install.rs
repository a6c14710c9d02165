//! Copies files from the image onto the node (libnvshare.so, nvshare-ctl)
//! before the plugin registers, so no container is allocated before the
//! hook is there.
//!
//! Each file is written under a temporary name and renamed into place:
//! running containers have the old library mapped, and overwriting it in
//! place would change the code under their feet.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why a file could not be installed.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not install {source_path} into {dest_dir}: {error}; check that the node directory is mounted writable in the plugin container"
)]
pub struct InstallError {
    /// The file to install.
    pub source_path: PathBuf,
    /// Where to.
    pub dest_dir: PathBuf,
    /// What went wrong.
    #[source]
    pub error: io::Error,
}

/// Installs every file of `sources` into `dest_dir` under its own name,
/// creating `dest_dir` if needed. A file already there with the same
/// contents is left alone.
pub fn install_files(sources: &[PathBuf], dest_dir: &Path) -> Result<(), InstallError> {
    for source in sources {
        install_one(source, dest_dir).map_err(|error| InstallError {
            source_path: source.clone(),
            dest_dir: dest_dir.to_owned(),
            error,
        })?;
    }
    Ok(())
}

fn install_one(source: &Path, dest_dir: &Path) -> io::Result<()> {
    let name = source
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the source names no file"))?;
    let dest = dest_dir.join(name);
    let contents = fs::read(source)?;
    if fs::read(&dest).is_ok_and(|existing| existing == contents) {
        tracing::info!(file = %dest.display(), "already installed");
        return Ok(());
    }
    fs::create_dir_all(dest_dir)?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dest_dir.join(temp_name);
    let written = (|| {
        fs::write(&temp, &contents)?;
        fs::set_permissions(&temp, fs::metadata(source)?.permissions())?;
        fs::File::open(&temp)?.sync_all()?;
        fs::rename(&temp, &dest)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    tracing::info!(file = %dest.display(), "installed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_land_with_their_mode_and_replace_old_ones_by_rename() {
        let src_dir = tempfile::tempdir().unwrap();
        let node = tempfile::tempdir().unwrap();
        let lib = src_dir.path().join("libnvshare.so");
        let ctl = src_dir.path().join("nvshare-ctl");
        fs::write(&lib, b"new library").unwrap();
        fs::write(&ctl, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&ctl, fs::Permissions::from_mode(0o755)).unwrap();
        let dest = node.path().join("usr/local/lib/nvshare");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("libnvshare.so"), b"old library").unwrap();
        let old_inode =
            std::os::unix::fs::MetadataExt::ino(&fs::metadata(dest.join("libnvshare.so")).unwrap());

        install_files(&[lib.clone(), ctl.clone()], &dest).unwrap();

        assert_eq!(
            fs::read(dest.join("libnvshare.so")).unwrap(),
            b"new library"
        );
        let new_meta = fs::metadata(dest.join("libnvshare.so")).unwrap();
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&new_meta),
            old_inode,
            "replaced, not overwritten"
        );
        let mode = fs::metadata(dest.join("nvshare-ctl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let leftovers: Vec<_> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let node = tempfile::tempdir().unwrap();
        let err =
            install_files(&[PathBuf::from("/nonexistent/libnvshare.so")], node.path()).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/libnvshare.so"),
            "{err}"
        );
    }
}
