//! dbt packages: `packages.yml` (or `dependencies.yml`) and the packages
//! installed in `dbt_packages/` (dbt's `packages-install-path`).
//!
//! A package's macros are callable as `<package>.macro()` and through
//! `adapter.dispatch`; its generic tests as `<package>.test`; its models
//! and seeds are built with the project's, `ref('<package>', 'model')`. A `local:`
//! package is read where it is; a package from git or dbt's hub is read
//! from `dbt_packages/`, where `etl deps` (git) or `dbt deps` puts it. A
//! package named in `packages.yml` and not installed is an error naming it.

use std::process::Command;

use serde::Deserialize;

use super::*;

/// An installed package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its project name, the namespace of its macros and the first part of
    /// its nodes' fqn.
    pub name: String,
    /// Its folder, relative to the project.
    pub root: PathBuf,
    pub macro_files: Vec<SourceFile>,
    /// Its model and seed folders, relative to the project.
    pub(super) model_dirs: Vec<String>,
    pub(super) seed_dirs: Vec<String>,
    pub(super) snapshot_dirs: Vec<String>,
    pub(super) test_dirs: Vec<String>,
    /// Its own dbt_project.yml, and the `models:`/`seeds:` trees there.
    pub(super) file: PathBuf,
    pub(super) models: Option<project_file::ConfigTree>,
    pub(super) seeds: Option<project_file::ConfigTree>,
    pub(super) snapshots: Option<project_file::ConfigTree>,
}

/// The files dbt reads the package list from.
const PACKAGE_FILES: &[&str] = &["packages.yml", "dependencies.yml"];

#[derive(Debug, Deserialize)]
struct PackagesFile {
    #[serde(default)]
    packages: Vec<Spanned<Map<String, Value>>>,
    #[serde(default)]
    #[allow(dead_code)]
    projects: Option<Value>,
}

/// One entry of `packages.yml`.
#[derive(Debug, Clone)]
pub enum Requirement {
    Local(PathBuf),
    Git {
        url: String,
        revision: Option<String>,
        subdirectory: Option<String>,
    },
    Hub {
        package: String,
    },
}

impl Requirement {
    /// The folder name it is installed under in `dbt_packages/` (dbt's:
    /// the repository's or hub package's last path segment).
    fn folder(&self) -> String {
        let last = |s: &str| {
            s.trim_end_matches('/')
                .rsplit(['/', ':'])
                .next()
                .unwrap_or(s)
                .trim_end_matches(".git")
                .to_owned()
        };
        match self {
            Requirement::Local(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Requirement::Git { url, subdirectory, .. } => {
                subdirectory.as_deref().map_or_else(|| last(url), |s| last(s))
            }
            Requirement::Hub { package } => last(package),
        }
    }

    fn shown(&self) -> String {
        match self {
            Requirement::Local(path) => format!("local package `{}`", path.display()),
            Requirement::Git { url, .. } => format!("git package `{url}`"),
            Requirement::Hub { package } => format!("package `{package}`"),
        }
    }
}

/// The package list, each entry with its span.
pub fn requirements(root: &Path) -> Result<Vec<(Requirement, Option<Span>)>, Diagnostics> {
    let Some(file) = PACKAGE_FILES.iter().map(PathBuf::from).find(|f| root.join(f).is_file()) else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(root.join(&file)).map_err(|e| vec![io_error(&file, &e)])?;
    let parsed: PackagesFile = yaml::parse(&file, &text).map_err(|e| vec![e])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for entry in parsed.packages {
        let span = yaml::span(&file, &entry.referenced);
        let text_of = |key: &str| entry.value.get(key).and_then(Value::as_str).map(str::to_owned);
        let requirement = if let Some(path) = text_of("local") {
            Requirement::Local(PathBuf::from(path))
        } else if let Some(url) = text_of("git") {
            Requirement::Git {
                url,
                revision: text_of("revision"),
                subdirectory: text_of("subdirectory"),
            }
        } else if let Some(package) = text_of("package") {
            Requirement::Hub { package }
        } else {
            errors.push(
                Diagnostic::error(
                    Code::InvalidConfig,
                    "a package entry names no `local:`, `git:` or `package:`",
                )
                .with_span(span),
            );
            continue;
        };
        out.push((requirement, span));
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// A package's own `dbt_project.yml`: only what etl reads of it.
#[derive(Debug, Deserialize)]
struct PackageProject {
    name: String,
    #[serde(default, rename = "macro-paths")]
    macro_paths: Option<Vec<String>>,
    #[serde(default, rename = "model-paths", alias = "source-paths")]
    model_paths: Option<Vec<String>>,
    #[serde(default, rename = "seed-paths", alias = "data-paths")]
    seed_paths: Option<Vec<String>>,
    #[serde(default, rename = "snapshot-paths")]
    snapshot_paths: Option<Vec<String>>,
    #[serde(default, rename = "test-paths")]
    test_paths: Option<Vec<String>>,
    #[serde(default)]
    models: Option<project_file::ConfigTree>,
    #[serde(default)]
    seeds: Option<project_file::ConfigTree>,
    #[serde(default)]
    snapshots: Option<project_file::ConfigTree>,
}

/// The packages of the project at `root`, installed in `install_path`.
pub(super) fn load(root: &Path, install_path: &str) -> Result<Vec<Package>, Diagnostics> {
    let requirements = requirements(root)?;
    let mut errors = Vec::new();
    let mut folders: Vec<(PathBuf, Option<Span>)> = Vec::new();
    for (requirement, span) in &requirements {
        match requirement {
            Requirement::Local(path) => folders.push((path.clone(), span.clone())),
            other => {
                let folder = Path::new(install_path).join(other.folder());
                if !root.join(&folder).join("dbt_project.yml").is_file() {
                    errors.push(
                        Diagnostic::error(
                            Code::MissingPackage,
                            format!("{} is not installed in `{install_path}/`", other.shown()),
                        )
                        .with_span(span.clone())
                        .with_help("run `etl deps` (git packages) or `dbt deps`"),
                    );
                }
            }
        }
    }
    // Every package installed, as dbt loads them.
    if let Ok(entries) = std::fs::read_dir(root.join(install_path)) {
        let mut installed: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("dbt_project.yml").is_file())
            .map(|e| Path::new(install_path).join(e.file_name()))
            .collect();
        installed.sort();
        folders.extend(installed.into_iter().map(|f| (f, None)));
    }
    let mut packages: Vec<Package> = Vec::new();
    for (folder, span) in folders {
        let file = folder.join("dbt_project.yml");
        let text = match std::fs::read_to_string(root.join(&file)) {
            Ok(text) => text,
            Err(e) => {
                errors.push(io_error(&file, &e).with_span(span));
                continue;
            }
        };
        let project: PackageProject = match yaml::parse(&file, &text) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if packages.iter().any(|p| p.name == project.name) {
            continue;
        }
        let dirs = |paths: Option<Vec<String>>, default: &str| -> Vec<String> {
            paths
                .unwrap_or_else(|| vec![default.to_owned()])
                .iter()
                .map(|p| folder.join(p).to_string_lossy().into_owned())
                .collect()
        };
        let macro_paths = discover(root, &dirs(project.macro_paths, "macros"), &["sql"], &mut errors);
        let macro_files = read_all(root, macro_paths, &mut errors)
            .into_iter()
            .map(|(path, text)| SourceFile {
                path,
                text,
                block: None,
            })
            .collect();
        packages.push(Package {
            name: project.name,
            model_dirs: dirs(project.model_paths.clone(), "models"),
            seed_dirs: dirs(project.seed_paths.clone(), "seeds"),
            snapshot_dirs: dirs(project.snapshot_paths.clone(), "snapshots"),
            test_dirs: dirs(project.test_paths.clone(), "tests"),
            file,
            models: project.models,
            seeds: project.seeds,
            snapshots: project.snapshots,
            root: folder,
            macro_files,
        });
    }
    if errors.is_empty() { Ok(packages) } else { Err(errors) }
}

/// What `etl deps` did with one package.
#[derive(Debug)]
pub struct Installed {
    pub requirement: String,
    pub outcome: Result<String, String>,
}

/// `etl deps`: installs the git packages of `packages.yml` into
/// `install_path` (a local package is read where it is; dbt's hub is not
/// reachable from etl).
pub fn install(root: &Path, install_path: &str) -> Result<Vec<Installed>, Diagnostics> {
    let mut out = Vec::new();
    for (requirement, _) in requirements(root)? {
        let shown = requirement.shown();
        let outcome = match &requirement {
            Requirement::Local(path) => {
                if root.join(path).join("dbt_project.yml").is_file() {
                    Ok("read where it is".to_owned())
                } else {
                    Err(format!("`{}` has no dbt_project.yml", path.display()))
                }
            }
            Requirement::Hub { package } => Err(format!(
                "etl cannot install from dbt's package hub: install `{package}` with `dbt deps`, \
                 or name its git repository (`git:` and `revision:`) in packages.yml"
            )),
            Requirement::Git {
                url,
                revision,
                subdirectory,
            } => clone(
                root,
                install_path,
                &requirement,
                url,
                revision.as_deref(),
                subdirectory.as_deref(),
            ),
        };
        out.push(Installed {
            requirement: shown,
            outcome,
        });
    }
    Ok(out)
}

fn clone(
    root: &Path,
    install_path: &str,
    requirement: &Requirement,
    url: &str,
    revision: Option<&str>,
    subdirectory: Option<&str>,
) -> Result<String, String> {
    let target = root.join(install_path).join(requirement.folder());
    let scratch = root
        .join(install_path)
        .join(format!(".{}.cloning", requirement.folder()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(root.join(install_path)).map_err(|e| e.to_string())?;
    let mut git = Command::new("git");
    git.args(["clone", "--quiet", "--depth", "1"]);
    if let Some(revision) = revision {
        git.args(["--branch", revision]);
    }
    let output = git
        .arg(url)
        .arg(&scratch)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!(
            "git clone failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let source = match subdirectory {
        Some(sub) => scratch.join(sub),
        None => scratch.clone(),
    };
    if !source.join("dbt_project.yml").is_file() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err("the repository has no dbt_project.yml".to_owned());
    }
    // The new copy replaces the old in one rename.
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&source, &target).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(format!(
        "installed in {}/{}{}",
        install_path,
        requirement.folder(),
        revision.map(|r| format!(" at {r}")).unwrap_or_default()
    ))
}
