//! Bundles the docs site's JavaScript libraries into the binary: `npm ci`
//! installs the versions `site/package-lock.json` pins into OUT_DIR, and
//! `etl docs generate` writes them beside the site, so the site needs no
//! network when it is viewed. Without npm (or its registry), etl builds
//! all the same and `etl docs generate` says what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 2] = [
    "cytoscape/dist/cytoscape.min.js",
    "cytoscape-dagre/dist/cytoscape-dagre.min.js",
];

fn main() {
    println!("cargo:rerun-if-changed=site/package.json");
    println!("cargo:rerun-if-changed=site/package-lock.json");
    // Tried again when the environment that decides npm changes.
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=npm_config_registry");
    println!("cargo:rustc-check-cfg=cfg(etl_docs_js_missing)");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("site");
    let modules = dir.join("node_modules");
    println!("cargo:rustc-env=ETL_SITE_MODULES={}", modules.display());
    if let Err(why) = install(&dir, &modules) {
        println!("cargo:warning=the docs site's JavaScript was not bundled ({why}); `etl docs generate` will say so");
        println!("cargo:rustc-cfg=etl_docs_js_missing");
        // Empty files, so that the binary builds.
        for file in FILES {
            let path = modules.join(file);
            if !path.exists() {
                std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("OUT_DIR is writable");
                std::fs::write(&path, "").expect("OUT_DIR is writable");
            }
        }
    }
}

/// Installs the pinned packages, unless the lock file is the one they
/// were installed from.
fn install(dir: &Path, modules: &Path) -> Result<(), String> {
    let lock = std::fs::read("site/package-lock.json").map_err(|e| format!("site/package-lock.json: {e}"))?;
    let stamp = dir.join("installed-from.json");
    let installed = FILES
        .iter()
        .all(|f| std::fs::metadata(modules.join(f)).is_ok_and(|m| m.len() > 0));
    if installed && std::fs::read(&stamp).ok().as_deref() == Some(lock.as_slice()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new("site").join(file), dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
            "--fetch-timeout=60000",
            "--fetch-retries=1",
        ])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm ci exited with {status}"));
    }
    std::fs::write(&stamp, &lock).map_err(|e| e.to_string())?;
    Ok(())
}
