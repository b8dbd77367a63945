//! The files under a directory, for tests that search a tree for what must not be there (a
//! token in a sandbox, say).

use std::path::{Path, PathBuf};

/// Every regular file under `dir` (recursively, symlinks not followed) of at most `limit` bytes,
/// read whole. Sockets and FIFOs are skipped: reading one would block. A file that vanishes or
/// cannot be read while the tree is walked is left out.
pub fn regular_files(dir: &Path, limit: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                todo.push(path);
            } else if meta.is_file()
                && meta.len() <= limit
                && let Ok(bytes) = std::fs::read(&path)
            {
                found.push((path, bytes));
            }
        }
    }
    found
}
