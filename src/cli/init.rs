//! `etl init <name>`: a new project that builds (in `<name>/`, under
//! `--project-dir` when given): a project file with a
//! target, a seed, a staging view, a mart with a data test, and a
//! `.gitignore` for what builds leave.

use clap::Args;
use etl::diagnostic::{Code, Diagnostic};

use super::{Global, Output};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project's name, and the folder it is made in.
    name: String,
}

pub fn run(global: &Global, args: &InitArgs, out: &Output) -> u8 {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        let diag = Diagnostic::error(
            Code::InvalidArgument,
            format!("`{name}` is not a project name: letters, digits and `_`, not starting with a digit"),
        );
        out.fatal(&[diag], None);
        return 2;
    }
    // In the folder etl runs in, or under `--project-dir`.
    let dir = global.project_dir.join(name);
    let dir = dir.as_path();
    if dir.exists() {
        let diag = Diagnostic::error(
            Code::InvalidArgument,
            format!("`{}` exists already: etl init makes a new folder", dir.display()),
        );
        out.fatal(&[diag], None);
        return 2;
    }
    let files: [(&str, String); 6] = [
        (
            "project.yaml",
            format!(
                "name: {name}\n\
                 target: dev\n\
                 targets:\n  \
                   dev:\n    \
                     lake: lake/        # a folder, or s3://bucket/path/, gs://..., az://...\n\
                 models:\n  \
                   staging:\n    \
                     +materialized: view\n  \
                   marts:\n    \
                     +materialized: table\n"
            ),
        ),
        (
            "seeds/customers.csv",
            "id,name,country\n1,Ana,PT\n2,Bo,SE\n3,Cy,PT\n".to_owned(),
        ),
        (
            "models/staging/stg_customers.sql",
            "select id as customer_id, name, upper(country) as country\nfrom {{ ref('customers') }}\n".to_owned(),
        ),
        (
            "models/marts/customers_by_country.sql",
            "select country, count(*) as customers\nfrom {{ ref('stg_customers') }}\ngroup by country\n".to_owned(),
        ),
        (
            "models/marts/schema.yml",
            "version: 2\nmodels:\n  - name: customers_by_country\n    columns:\n      - name: country\n        \
             data_tests: [unique, not_null]\n"
                .to_owned(),
        ),
        (".gitignore", "target/\nlake/\n".to_owned()),
    ];
    for (path, text) in &files {
        let path = dir.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            out.fatal(
                &[Diagnostic::error(
                    Code::Io,
                    format!("cannot write `{}`: {e}", path.display()),
                )],
                None,
            );
            return 2;
        }
    }
    out.line(&format!(
        "Made `{name}`: a seed, a staging view, a mart and its tests.\nBuild it: cd {name} && etl build"
    ));
    0
}
