//! `etl clean`: remove target/. The lake is data, never cleaned by etl.

use etl::diagnostic::{Code, Diagnostic};
use etl::project;

use super::{Global, Output};

pub fn run(global: &Global, out: &Output) -> u8 {
    let project = match project::load(&global.project_dir, &global.load_options()) {
        Ok(p) => p,
        Err(diags) => {
            out.fatal(&diags, Some(&global.project_dir));
            return 2;
        }
    };
    let target = etl::artifacts::target_dir(&project);
    match std::fs::remove_dir_all(&target) {
        Ok(()) => {
            out.line(&format!("Removed {}", target.display()));
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.line("Nothing to clean");
            0
        }
        Err(e) => {
            out.fatal(
                &[Diagnostic::error(
                    Code::Io,
                    format!("cannot remove `{}`: {e}", target.display()),
                )],
                Some(&project.root),
            );
            2
        }
    }
}
