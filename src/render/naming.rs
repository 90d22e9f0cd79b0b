//! The schema and name each model and seed gets in the lake.
//!
//! In an etl project a node's `schema` config is its schema. A dbt project
//! names them as dbt does: `generate_schema_name` gives the target's schema
//! when a node sets none and `<target schema>_<schema>` when it does, and
//! `generate_alias_name` gives the `alias` or the node's name. A project
//! that defines either macro itself gets its own naming: the macro is
//! called for each node, with `custom_schema_name` (or `custom_alias_name`)
//! and `node`, as dbt calls it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::{Environment, Value};

use super::context::{self, Globals, Recorded, Scope};
use super::environment;
use super::macros::Macros;
use crate::config::RawConfig;
use crate::diagnostic::{Code, Diagnostic};
use crate::lake::Relation;
use crate::project::{Flavor, Project};

const SCHEMA_MACRO: &str = "generate_schema_name";
const ALIAS_MACRO: &str = "generate_alias_name";

/// A node as the naming macros see it.
pub(super) struct NodeRef<'a> {
    pub resource_type: &'static str,
    pub name: &'a str,
    pub fqn: &'a [String],
    pub config: &'a RawConfig,
}

pub(super) struct Naming {
    dbt: bool,
    target_schema: String,
    /// An environment with the project's macros, when it defines its own
    /// naming; with which of the two macros it defines.
    own: Option<(Environment<'static>, bool, bool)>,
    globals: Arc<Globals>,
}

impl Naming {
    pub fn new(project: &Project, macros: &Macros, globals: Arc<Globals>) -> Result<Naming, Vec<Diagnostic>> {
        let dbt = project.flavor == Flavor::Dbt;
        let defines = |name: &str| dbt && macros.project_defines(name);
        let (schema, alias) = (defines(SCHEMA_MACRO), defines(ALIAS_MACRO));
        let own = if schema || alias {
            Some((environment(macros, project, std::iter::empty())?, schema, alias))
        } else {
            None
        };
        Ok(Naming {
            dbt,
            target_schema: project.target.schema.clone(),
            own,
            globals,
        })
    }

    /// The relation of `node`, from its config.
    pub fn relation(&self, node: &NodeRef, macros: &Macros, project: &Project) -> Result<Relation, Diagnostic> {
        let custom_schema = node.config.schema();
        let custom_alias = node.config.alias();
        let ephemeral = node.config.materialized() == Some("ephemeral");
        // A snapshot's `target_schema` (dbt before 1.9) is its schema as
        // written, never passed to `generate_schema_name`.
        let target_schema = (node.resource_type == "snapshot")
            .then(|| node.config.value("target_schema").and_then(|v| v.as_str()))
            .flatten();
        if let Some(schema) = target_schema {
            let identifier = match &self.own {
                Some((env, _, true)) if self.dbt => self.call(env, ALIAS_MACRO, custom_alias, node, macros, project)?,
                _ => custom_alias.map_or(node.name, str::trim).to_owned(),
            };
            return Ok(Relation {
                schema: schema.trim().to_owned(),
                identifier,
                ephemeral: false,
            });
        }
        if !self.dbt {
            return Ok(Relation {
                schema: custom_schema.unwrap_or(&self.target_schema).to_owned(),
                identifier: custom_alias.unwrap_or(node.name).to_owned(),
                ephemeral,
            });
        }
        let schema = match &self.own {
            Some((env, true, _)) => self.call(env, SCHEMA_MACRO, custom_schema, node, macros, project)?,
            _ => match custom_schema {
                None => self.target_schema.clone(),
                Some(custom) => format!("{}_{}", self.target_schema, custom.trim()),
            },
        };
        let identifier = match &self.own {
            Some((env, _, true)) => self.call(env, ALIAS_MACRO, custom_alias, node, macros, project)?,
            _ => custom_alias.map_or(node.name, str::trim).to_owned(),
        };
        Ok(Relation {
            schema,
            identifier,
            ephemeral,
        })
    }

    fn call(
        &self,
        env: &Environment<'static>,
        macro_name: &str,
        custom: Option<&str>,
        node: &NodeRef,
        macros: &Macros,
        project: &Project,
    ) -> Result<String, Diagnostic> {
        let package = node
            .fqn
            .first()
            .cloned()
            .unwrap_or_else(|| self.globals.project.clone());
        let node_value = Value::from(BTreeMap::from([
            ("name", Value::from(node.name)),
            ("resource_type", Value::from(node.resource_type)),
            ("package_name", Value::from(package.clone())),
            ("fqn", Value::from(node.fqn.to_vec())),
            (
                "unique_id",
                Value::from(format!("{}.{package}.{}", node.resource_type, node.name)),
            ),
            ("config", Value::from(minijinja::value::Serde(node.config.values()))),
        ]));
        let scope = Arc::new(Scope {
            globals: self.globals.clone(),
            this: None,
            is_incremental: false,
            base_config: node.config.clone(),
            recorded: Mutex::new(Recorded::default()),
            macros: Default::default(),
        });
        let extra = BTreeMap::from([("custom", Value::from(custom)), ("node", node_value)]);
        let template = format!("{}{{{{ {macro_name}(custom, node) }}}}", macros.import);
        let text = env
            .render_str(&template, context::render_context_with(scope, extra))
            .map_err(|e| macros.diagnostic(&e, project))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Diagnostic::error(
                Code::InvalidConfig,
                format!(
                    "the project's `{macro_name}` gave an empty name for {} `{}`",
                    node.resource_type, node.name
                ),
            )
            .with_help(format!("`{macro_name}` must render a name for every node")));
        }
        Ok(text.to_owned())
    }
}
