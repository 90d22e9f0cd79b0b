//! dbt's `profiles.yml`: where a dbt project's targets are. A profile names
//! its default `target:` and its `outputs:`; etl builds with an output of
//! type `etl` (a lake, as in `project.yaml`'s targets) or `duckdb` (read as
//! dbt-duckdb would write: `external_root` is the lake, and SQL keeps
//! DuckDB's semantics). Any other warehouse is an error at its `type:`.
//!
//! The file is looked for where dbt looks: `--profiles-dir`
//! (or `DBT_PROFILES_DIR`, which the command line reads), the project
//! directory, then `~/.dbt/`.

use serde::Deserialize;

use super::*;

/// The file name dbt gives profiles.
const PROFILES: &str = "profiles.yml";

/// One profile: its default target and its outputs.
#[derive(Debug, Deserialize)]
struct ProfileSpec {
    #[serde(default)]
    target: Option<Spanned<String>>,
    #[serde(default)]
    outputs: BTreeMap<String, Spanned<BTreeMap<String, Spanned<Value>>>>,
}

/// The `profiles.yml` a dbt project uses, if there is one.
pub(super) fn find(root: &Path, profiles_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = profiles_dir {
        // Named explicitly: a missing file is reported when it is read.
        return Some(absolute(dir).join(PROFILES));
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".dbt"));
    [Some(root.to_path_buf()), home]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(PROFILES))
        .find(|file| file.is_file())
}

/// The target `requested` (else the profile's default) of the profile
/// `name` in `file`.
pub(super) fn target(
    root: &Path,
    file: &Path,
    name: &Spanned<String>,
    project_file: &Path,
    vars: &Map<String, Value>,
    requested: Option<&str>,
    warnings: &mut Diagnostics,
) -> Result<Target, Diagnostic> {
    let shown = shown_path(root, file);
    let text = std::fs::read_to_string(file).map_err(|e| {
        Diagnostic::error(Code::UnknownProfile, format!("cannot read `{}`: {e}", file.display()))
            .with_help("`--profiles-dir` (or `DBT_PROFILES_DIR`) names the folder holding `profiles.yml`")
    })?;
    let profiles: BTreeMap<String, Spanned<ProfileSpec>> = yaml::parse(&shown, &text)?;
    let Some(profile) = profiles.get(&name.value) else {
        let known: Vec<&str> = profiles.keys().map(String::as_str).filter(|k| *k != "config").collect();
        return Err(Diagnostic::error(
            Code::UnknownProfile,
            format!("profile `{}` is not in `{}`", name.value, shown.display()),
        )
        .with_span(yaml::span_of(project_file, name))
        .with_suggestion(&name.value, known.iter().copied())
        .with_note(format!("the profiles there are: {}", known.join(", "))));
    };
    let profile = &profile.value;
    let target_name = requested
        .map(str::to_owned)
        .or_else(|| profile.target.as_ref().map(|t| t.value.clone()))
        .unwrap_or_else(|| "dev".to_owned());
    let Some(output) = profile.outputs.get(&target_name) else {
        let known: Vec<&str> = profile.outputs.keys().map(String::as_str).collect();
        let span = profile
            .target
            .as_ref()
            .filter(|_| requested.is_none())
            .and_then(|t| yaml::span_of(&shown, t));
        return Err(Diagnostic::error(
            Code::UnknownTarget,
            format!("target `{target_name}` is not an output of profile `{}`", name.value),
        )
        .with_span(span)
        .with_suggestion(&target_name, known.iter().copied())
        .with_note(format!("the outputs of `{}` are: {}", name.value, known.join(", "))));
    };
    let scope = settings::SettingScope { vars, target: None };
    let at = |value: &Spanned<Value>| yaml::span(&shown, &value.referenced);
    let text_of = |key: &str, value: &Spanned<Value>| -> Result<String, Diagnostic> {
        let text = match &value.value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(
                    Diagnostic::error(Code::InvalidConfig, format!("`{key}` must be a string")).with_span(at(value)),
                );
            }
        };
        settings::render(&text, &scope)
            .map_err(|message| Diagnostic::error(Code::InvalidConfig, message).with_span(at(value)))
    };
    let output_span = yaml::span(&shown, &output.referenced);
    let Some(kind) = output.value.get("type") else {
        return Err(Diagnostic::error(
            Code::MissingKey,
            format!("output `{target_name}` of profile `{}` has no `type`", name.value),
        )
        .with_span(output_span));
    };
    let kind_text = text_of("type", kind)?;
    let (etl_keys, used): (&[&str], &[&str]) = match kind_text.as_str() {
        "etl" => (
            &[
                "type",
                "lake",
                "schema",
                "threads",
                "memory_limit",
                "options",
                "sql_dialect",
                "notify",
            ],
            &[],
        ),
        "duckdb" => (
            &["type", "path", "external_root", "schema", "threads", "database"],
            // What dbt-duckdb does with its connection that a lake has no
            // need of: extensions are built in, settings are DuckDB's.
            &[
                "extensions",
                "settings",
                "attach",
                "plugins",
                "filesystems",
                "secrets",
                "module_paths",
                "use_credential_provider",
                "disable_transactions",
                "keep_open",
                "retries",
                "config_options",
                "is_motherduck",
            ],
        ),
        other => {
            return Err(Diagnostic::error(
                Code::Unsupported,
                format!(
                    "profile output type `{other}`: etl builds into a lake, from outputs of type `etl` or `duckdb`"
                ),
            )
            .with_span(at(kind))
            .with_help("add an output of `type: etl` with a `lake:` path or URL, and choose it with `--target`"));
        }
    };
    for (key, value) in &output.value {
        if etl_keys.contains(&key.as_str()) {
            continue;
        }
        let message = if used.contains(&key.as_str()) {
            format!("`{key}` configures a DuckDB connection, which etl does not open: it is not used")
        } else {
            format!("`{key}` is not a key of a `{kind_text}` output: it is not used")
        };
        warnings.push(Diagnostic::warning(Code::Unsupported, message).with_span(at(value)));
    }
    let get = |key: &str| output.value.get(key);
    let dialect = match (kind_text.as_str(), get("sql_dialect")) {
        ("duckdb", _) => Dialect::DuckDb,
        (_, None) => Dialect::DataFusion,
        (_, Some(value)) => {
            let text = text_of("sql_dialect", value)?;
            Dialect::parse(&text).ok_or_else(|| {
                Diagnostic::error(Code::InvalidConfig, format!("unknown `sql_dialect` `{text}`"))
                    .with_span(at(value))
                    .with_suggestion(&text, Dialect::NAMES.iter().copied())
            })?
        }
    };
    let lake = match kind_text.as_str() {
        "duckdb" => match (get("external_root"), get("path")) {
            (Some(root), _) => text_of("external_root", root)?,
            (None, Some(path)) => {
                let path = text_of("path", path)?;
                // Tables dbt-duckdb keeps in `dev.duckdb` are Delta tables
                // under `dev.lake/`: two outputs with two files keep two lakes.
                match path.as_str() {
                    ":memory:" | "" => "./lake".to_owned(),
                    file => Path::new(file).with_extension("lake").to_string_lossy().into_owned(),
                }
            }
            (None, None) => "./lake".to_owned(),
        },
        _ => match get("lake") {
            Some(lake) => text_of("lake", lake)?,
            None => {
                return Err(Diagnostic::error(
                    Code::MissingKey,
                    format!("output `{target_name}` of type `etl` has no `lake`"),
                )
                .with_span(output_span)
                .with_help("`lake:` is a path relative to the project, or a URL such as `s3://bucket/lake`"));
            }
        },
    };
    let lake = crate::lake::folder_url(&resolve_location(root, &lake))
        .map_err(|e| Diagnostic::error(Code::InvalidLake, e.to_string()).with_span(output_span.clone()))?;
    let threads = match get("threads") {
        None => None,
        Some(value) => {
            let text = text_of("threads", value)?;
            match text.parse::<usize>() {
                Ok(0) | Err(_) => {
                    return Err(Diagnostic::error(
                        Code::InvalidThreads,
                        format!("`threads: {text}`: a build needs a whole number of threads, at least one"),
                    )
                    .with_span(at(value)));
                }
                Ok(n) => Some(n),
            }
        }
    };
    let mut options = BTreeMap::new();
    if let Some(value) = get("options") {
        let Value::Object(map) = &value.value else {
            return Err(
                Diagnostic::error(Code::InvalidConfig, "`options` must be a mapping of storage options")
                    .with_span(at(value)),
            );
        };
        for (key, option) in map {
            let option = Spanned {
                value: option.clone(),
                referenced: value.referenced,
                defined: value.defined,
            };
            let text = text_of(key, &option)?;
            crate::lake::check_option(&lake, key).map_err(|e| {
                Diagnostic::error(Code::InvalidStorageOption, e.to_string())
                    .with_span(at(value))
                    .with_help("see docs/storage.md for the options of each object store")
            })?;
            options.insert(key.clone(), text);
        }
    }
    Ok(Target {
        name: target_name,
        lake,
        schema: match get("schema") {
            Some(schema) => text_of("schema", schema)?,
            None => "main".to_owned(),
        },
        threads,
        memory_limit: get("memory_limit").map(|m| text_of("memory_limit", m)).transpose()?,
        options,
        dialect,
        notify: match get("notify") {
            None => None,
            Some(value) => Some(crate::config::parse_notify(&value.value, at(value), root, &|text| {
                settings::render(text, &scope)
            })?),
        },
    })
}

/// `file` relative to the project when it is inside it, as diagnostics
/// show project files.
fn shown_path(root: &Path, file: &Path) -> PathBuf {
    file.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| file.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(files: &[(&str, &str)], options: &LoadOptions) -> (tempfile::TempDir, Result<Project, Diagnostics>) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let project = load(dir.path(), options);
        (dir, project)
    }

    const PROJECT: &str = "name: shop\nconfig-version: 2\nprofile: shop\n";

    #[test]
    fn a_duckdb_profile_gives_the_lake_schema_threads_and_dialect() {
        let profiles = "config:\n  send_anonymous_usage_stats: false\nshop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: dev.duckdb\n      schema: analytics\n      threads: 3\n      extensions: [httpfs]\n    prod:\n      type: duckdb\n      external_root: s3://bucket/lake\n";
        let files = [("dbt_project.yml", PROJECT), ("profiles.yml", profiles)];
        let (dir, project) = load_with(&files, &LoadOptions::default());
        let project = project.unwrap();
        let target = &project.target;
        assert_eq!(target.name, "dev");
        assert_eq!(target.schema, "analytics");
        assert_eq!(target.threads, Some(3));
        assert_eq!(target.dialect, Dialect::DuckDb);
        let lake = url::Url::from_directory_path(dir.path().canonicalize().unwrap().join("dev.lake")).unwrap();
        assert_eq!(target.lake.as_str(), lake.as_str());
        // `extensions` is said, at its line.
        let warning = project
            .warnings
            .iter()
            .find(|w| w.message.contains("extensions"))
            .unwrap();
        assert_eq!(warning.span.as_ref().unwrap().line, 11);

        let options = LoadOptions {
            target: Some("prod".to_owned()),
            ..LoadOptions::default()
        };
        let (_dir, project) = load_with(&files, &options);
        let target = project.unwrap().target;
        assert_eq!(target.lake.as_str(), "s3://bucket/lake/");
        assert_eq!(target.schema, "main");
    }

    #[test]
    fn an_etl_output_sets_the_lake_and_may_set_the_dialect() {
        let profiles = "shop:\n  target: ci\n  outputs:\n    ci:\n      type: etl\n      lake: \"{{ env_var('ETL_TEST_SURELY_UNSET_LAKE', 'build/lake') }}\"\n      sql_dialect: duckdb\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dbt_project.yml"), PROJECT).unwrap();
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(dir.path().join("conf/profiles.yml"), profiles).unwrap();
        let options = LoadOptions {
            profiles_dir: Some(dir.path().join("conf")),
            ..LoadOptions::default()
        };
        let target = load(dir.path(), &options).unwrap().target;
        assert_eq!(target.name, "ci");
        assert!(target.lake.as_str().ends_with("/build/lake/"), "{}", target.lake);
        assert_eq!(target.dialect, Dialect::DuckDb);
    }

    #[test]
    fn a_warehouse_etl_cannot_build_into_is_an_error_at_its_type() {
        let profiles = "shop:\n  target: dev\n  outputs:\n    dev:\n      type: snowflake\n      account: x\n";
        let files = [("dbt_project.yml", PROJECT), ("profiles.yml", profiles)];
        let (_dir, project) = load_with(&files, &LoadOptions::default());
        let errors = project.unwrap_err();
        assert_eq!(errors[0].code, Code::Unsupported);
        assert_eq!(
            errors[0].message,
            "profile output type `snowflake`: etl builds into a lake, from outputs of type `etl` or `duckdb`"
        );
        let span = errors[0].span.as_ref().unwrap();
        assert_eq!((span.file.as_path(), span.line), (Path::new("profiles.yml"), 5));
    }

    #[test]
    fn a_missing_profile_or_output_names_what_there_is() {
        let profiles = "shops:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n";
        let files = [("dbt_project.yml", PROJECT), ("profiles.yml", profiles)];
        let (_dir, project) = load_with(&files, &LoadOptions::default());
        let error = &project.unwrap_err()[0];
        assert_eq!(error.code, Code::UnknownProfile);
        assert_eq!(error.message, "profile `shop` is not in `profiles.yml`");
        assert_eq!(error.span.as_ref().unwrap().line, 3);

        let profiles = "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n";
        let files = [("dbt_project.yml", PROJECT), ("profiles.yml", profiles)];
        let options = LoadOptions {
            target: Some("prd".to_owned()),
            ..LoadOptions::default()
        };
        let (_dir, project) = load_with(&files, &options);
        let error = &project.unwrap_err()[0];
        assert_eq!(error.code, Code::UnknownTarget);
        assert_eq!(error.message, "target `prd` is not an output of profile `shop`");
    }
}
