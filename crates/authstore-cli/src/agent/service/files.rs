//! The files install writes and uninstall removes: each written durably and atomically by the
//! library's writer (the way `auth.json` is), the directories install created recorded inside
//! the definition so that uninstall removes exactly those.

use std::path::{Path, PathBuf};

use authstore::error::Error;
use authstore::store::file::{Visibility, remove_file_durably, write_file_durably};

/// Creates `dir` and its missing parents; returns those it created, outermost first, so that
/// uninstall can remove exactly those again.
pub(super) fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.exists())
        .map(Path::to_path_buf)
        .collect();
    std::fs::create_dir_all(dir).map_err(|error| Error::io("create the directory", dir, error))?;
    Ok(missing.into_iter().rev().collect())
}

/// Removes the directories install created, innermost first, each only when it is empty.
pub(super) fn remove_created_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    for dir in dirs {
        if std::fs::remove_dir(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Prefixes the comment of a definition that records the directories install created.
pub(super) const CREATED_MARKER: &str = "authstore-created-dirs:";

/// How created directories are recorded inside a definition: a JSON array of paths, on one line.
pub(super) fn encode_dirs(dirs: &[PathBuf]) -> String {
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
}

/// The comment line of an XML definition (plist, task) that records `created`. `--` cannot
/// appear in an XML comment: dashes are written as JSON escapes.
pub(super) fn xml_created_dirs_comment(created: &[PathBuf]) -> String {
    format!(
        "<!-- {CREATED_MARKER} {} -->\n",
        encode_dirs(created).replace('-', "\\u002d")
    )
}

/// The directories recorded in `text` (see [`encode_dirs`]).
pub(super) fn decode_dirs(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split_once(CREATED_MARKER))
        .filter_map(|(_, rest)| {
            let json = rest.trim().trim_end_matches("-->").trim();
            serde_json::from_str::<Vec<String>>(json).ok()
        })
        .flatten()
        .map(PathBuf::from)
        .collect()
}

/// Writes `contents` to `path` with the library's durable atomic write (a temporary file in the
/// same directory, fsync, rename, fsync of the directory): a definition is never seen half
/// written, and one that install reported written survives a crash. `Private` (0600 from
/// creation) for a file holding a store URL with its password or the environment; `Readable`
/// (0644) for definitions, as service managers expect them.
pub(super) fn write_file(
    path: &Path,
    contents: &[u8],
    visibility: Visibility,
) -> Result<(), Error> {
    write_file_durably(path, contents, visibility)
}

/// Removes `path` if it exists (durably); returns whether it did.
pub(super) fn remove_file(path: &Path) -> Result<bool, Error> {
    remove_file_durably(path)
}

/// What a `--store-file` holds (launchd and Task Scheduler cannot pass a secret environment
/// variable): the URL on one line. Written 0600 by [`write_file`].
pub(super) fn store_file_contents(url: &str) -> Vec<u8> {
    format!("{url}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_directories_round_trip_through_their_record() {
        let dirs = vec![
            PathBuf::from("/home/a b/.config"),
            PathBuf::from("/home/a b/.config/sys\"temd--x"),
        ];
        let line = format!("# {CREATED_MARKER} {}", encode_dirs(&dirs));
        assert_eq!(decode_dirs(&line), dirs);
        // In an XML comment, with the dashes escaped.
        let comment = xml_created_dirs_comment(&dirs);
        let inside = comment
            .trim_end()
            .strip_prefix("<!--")
            .and_then(|c| c.strip_suffix("-->"))
            .unwrap();
        assert!(!inside.contains("--"), "{comment}");
        assert_eq!(decode_dirs(&comment), dirs);
    }
}
