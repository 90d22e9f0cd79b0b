//! How a node shows up in SQL: the schema and name `ref()` and `source()`
//! render to, and the folder of the lake its table lives in.

use url::Url;

/// How a node shows up in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: String,
    pub identifier: String,
    pub ephemeral: bool,
}

impl Relation {
    /// The SQL text `ref()` and `source()` render to.
    pub fn sql(&self) -> String {
        if self.ephemeral {
            format!("__dbt__cte__{}", self.identifier)
        } else {
            format!("{}.{}", quote(&self.schema), quote(&self.identifier))
        }
    }

    /// `schema.identifier`, as messages name it.
    pub fn name(&self) -> String {
        format!("{}.{}", self.schema, self.identifier)
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The folder of a built relation.
pub fn relation_location(root: &Url, relation: &Relation) -> Url {
    let mut url = root.clone();
    let path = format!("{}warehouse/{}/{}/", root.path(), relation.schema, relation.identifier);
    url.set_path(&path);
    url
}
