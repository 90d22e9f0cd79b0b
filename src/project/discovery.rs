//! Finding the project's files: models, seeds, macros, tests and
//! properties files under the paths the project file names, each with its
//! project-relative path and dbt's fully qualified name.

use super::*;

/// Files under `dirs` with one of `exts`, as project-relative paths, sorted.
pub(super) fn discover(root: &Path, dirs: &[String], exts: &[&str], errors: &mut Diagnostics) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    for dir in dirs {
        let abs = root.join(dir);
        if !abs.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&abs).sort_by_file_name() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(Diagnostic::error(
                        Code::Io,
                        format!("cannot read `{}`: {e}", abs.display()),
                    ));
                    continue;
                }
            };
            let path = entry.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            let ext_ok = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e));
            if entry.file_type().is_file() && ext_ok && !hidden {
                if let Ok(rel) = path.strip_prefix(root) {
                    found.insert(rel.to_path_buf());
                }
            }
        }
    }
    found.into_iter().collect()
}

pub(super) fn read(root: &Path, path: &Path, errors: &mut Diagnostics) -> Option<String> {
    match std::fs::read_to_string(root.join(path)) {
        Ok(text) => Some(text),
        Err(e) => {
            errors.push(io_error(path, &e));
            None
        }
    }
}

/// Reads `paths` on every core; a file that cannot be read is an error
/// and is left out.
pub(super) fn read_all(root: &Path, paths: Vec<PathBuf>, errors: &mut Diagnostics) -> Vec<(PathBuf, String)> {
    let texts = parallel::chunks(paths.len(), 64, |range| {
        paths[range]
            .iter()
            .map(|path| std::fs::read_to_string(root.join(path)).map_err(|e| io_error(path, &e)))
            .collect::<Vec<_>>()
    });
    let mut files = Vec::with_capacity(paths.len());
    for (path, text) in paths.into_iter().zip(texts.into_iter().flatten()) {
        match text {
            Ok(text) => files.push((path, text)),
            Err(e) => errors.push(e),
        }
    }
    files
}

pub(super) fn io_error(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(Code::Io, format!("cannot read `{}`: {e}", path.display())).with_span(Some(Span::file(path)))
}

/// `[project, folder..., name]` for a file under one of `dirs`.
pub(super) fn fqn_of(project: &str, dirs: &[String], path: &Path) -> Vec<String> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    fqn_with(project, dirs, path, name)
}

/// `[project, folder..., leaf]`: the folders of `path` under one of `dirs`.
pub(super) fn fqn_with(project: &str, dirs: &[String], path: &Path, leaf: &str) -> Vec<String> {
    let rel = dirs
        .iter()
        .find_map(|d| path.strip_prefix(normalize(Path::new(d))).ok())
        .unwrap_or(path);
    let mut fqn = vec![project.to_owned()];
    if let Some(parent) = rel.parent() {
        fqn.extend(
            parent
                .components()
                .filter_map(|c| c.as_os_str().to_str().map(str::to_owned)),
        );
    }
    fqn.push(leaf.to_owned());
    fqn
}

/// `tests/generic/**.sql` under a test path.
pub(super) fn is_generic_test_file(test_paths: &[String], path: &Path) -> bool {
    test_paths
        .iter()
        .any(|d| path.starts_with(normalize(&Path::new(d).join("generic"))))
}

pub(super) fn absolute(dir: &Path) -> PathBuf {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    };
    normalize(&abs)
}

/// Removes `.` and resolves `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
