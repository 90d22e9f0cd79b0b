//! `etl deps`: install the git packages of packages.yml into dbt_packages/.

use etl::project;

use super::{Global, Output};

pub fn run(global: &Global, out: &Output) -> u8 {
    let installed = match project::install_packages(&global.project_dir) {
        Ok(installed) => installed,
        Err(diags) => {
            out.fatal(&diags, Some(&global.project_dir));
            return 2;
        }
    };
    if installed.is_empty() {
        out.line("No packages in packages.yml");
        return 0;
    }
    let mut failed = 0;
    for package in &installed {
        match &package.outcome {
            Ok(done) => out.line(&format!("OK    {}: {done}", package.requirement)),
            Err(why) => {
                failed += 1;
                out.line(&format!("ERROR {}: {why}", package.requirement));
            }
        }
    }
    u8::from(failed > 0)
}
