//! What the check planned last time, so that the check at the start of a
//! build plans again only what changed: each model's output columns, kept
//! in `target/check_cache.json` under a key of everything its plan depends
//! on (etl's version, the session's options, the compiled SQL, its
//! `sql_header`, the SQL `{{ this }}` is planned from, and the columns of
//! each relation it reads). A model whose key is found is not planned: its
//! columns are those it had. Any change to what it reads or how gives
//! another key, and the model is planned again; a file that cannot be read
//! or does not parse is an empty cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use md5::Digest;

pub struct Cache {
    path: PathBuf,
    /// Per model (unique id): the key it was planned under and its output
    /// columns, as an Arrow IPC stream (hex).
    entries: HashMap<String, Entry>,
    changed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Entry {
    key: String,
    columns: String,
    /// Its plan's fingerprint (`plan_fingerprint`).
    #[serde(default)]
    plan: String,
    /// Its column lineage, nodes by unique id (see `check::lineage_json`).
    #[serde(default)]
    lineage: Option<serde_json::Value>,
}

impl Cache {
    /// The cache of `target/`; empty when it cannot be read.
    pub fn open(path: PathBuf) -> Cache {
        finish_saving();
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Cache {
            path,
            entries,
            changed: false,
        }
    }

    /// The columns `model` was planned with under `key`, and its plan's
    /// fingerprint.
    pub fn get(&self, model: &str, key: &str) -> Option<(SchemaRef, String, Option<&serde_json::Value>)> {
        let entry = self.entries.get(model).filter(|e| e.key == key && !e.plan.is_empty())?;
        Some((decode(&entry.columns)?, entry.plan.clone(), entry.lineage.as_ref()))
    }

    pub fn put(&mut self, model: &str, key: String, schema: &Schema, plan: &str, lineage: Option<serde_json::Value>) {
        let Some(columns) = encode(schema) else { return };
        let entry = Entry {
            key,
            columns,
            plan: plan.to_owned(),
            lineage,
        };
        if self.entries.get(model) != Some(&entry) {
            self.entries.insert(model.to_owned(), entry);
            self.changed = true;
        }
    }

    /// Keeps what this check planned, replacing the file at once (a
    /// temporary file renamed); one entry per model. A cache that cannot
    /// be written is only slower next time.
    pub fn save(self) {
        if !self.changed {
            return;
        }
        // Written on a thread of its own, so that what follows the check
        // (the manifest, the build) need not wait for 7 MB of JSON at
        // 5,000 models; one save at a time, and `open` and
        // `finish_saving` wait for it.
        let mut saving = SAVING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = saving.take() {
            let _ = previous.join();
        }
        *saving = Some(std::thread::spawn(move || self.write()));
    }

    fn write(self) {
        let Ok(text) = serde_json::to_vec(&self.entries) else {
            return;
        };
        // Its own temporary file: two builds sharing target/ each rename
        // a whole file.
        let temp = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|_| std::fs::write(&temp, text))
            .and_then(|_| std::fs::rename(&temp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            tracing::debug!(path = %self.path.display(), error = %e, "check cache not written");
        }
    }
}

/// The cache being written, if one is.
static SAVING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(None);

/// Waits until the cache `save` started is written: before the process
/// ends, and before a cache is read again.
pub fn finish_saving() {
    let pending = SAVING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    if let Some(pending) = pending {
        let _ = pending.join();
    }
}

/// A key of `parts`, in order.
pub fn key<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = md5::Md5::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// What a relation's columns are, for the keys of what reads it: names,
/// types, nullability and metadata.
pub fn columns_key(schema: &Schema) -> String {
    key([format!("{:?}", schema.fields()).as_str()])
}

fn encode(schema: &Schema) -> Option<String> {
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, schema).ok()?;
    writer.finish().ok()?;
    drop(writer);
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn decode(hex: &str) -> Option<SchemaRef> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes?), None).ok()?;
    Some(Arc::new(reader.schema().as_ref().clone()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

    use super::*;

    #[test]
    fn columns_come_back_as_they_were_kept_and_a_corrupt_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target/check_cache.json");
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("amount", DataType::Decimal128(38, 2), true),
        ]);
        let mut cache = Cache::open(path.clone());
        assert!(cache.get("m", "k").is_none());
        cache.put("m", "k".into(), &schema, "p1", Some(serde_json::json!({"columns": []})));
        cache.put("n", "k2".into(), &schema, "p2", None);
        cache.save();
        let mut again = Cache::open(path.clone());
        let (columns, plan, lineage) = again.get("m", "k").unwrap();
        assert_eq!((columns.as_ref(), plan.as_str()), (&schema, "p1"));
        assert_eq!(lineage, Some(&serde_json::json!({"columns": []})));
        assert!(again.get("m", "other").is_none(), "another key is a miss");
        // A model planned under a new key replaces its entry; the others stay.
        again.put("m", "k3".into(), &schema, "p3", None);
        again.save();
        let third = Cache::open(path.clone());
        assert!(third.get("m", "k").is_none());
        assert!(third.get("m", "k3").is_some());
        assert!(third.get("n", "k2").is_some());
        std::fs::write(&path, "{not json").unwrap();
        assert!(Cache::open(path.clone()).get("n", "k2").is_none());
        std::fs::write(&path, r#"{"n": {"key": "k2", "columns": "zz", "plan": "p2"}}"#).unwrap();
        assert!(
            Cache::open(path).get("n", "k2").is_none(),
            "columns that are not IPC are a miss"
        );
    }

    #[test]
    fn keys_differ_when_any_part_or_its_boundary_does() {
        assert_eq!(key(["a", "b"]), key(["a", "b"]));
        assert_ne!(key(["ab", ""]), key(["a", "b"]));
        let a = Schema::new(vec![Field::new("x", DataType::Int64, true)]);
        let b = Schema::new(vec![Field::new("x", DataType::Int32, true)]);
        let c = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
        assert_ne!(columns_key(&a), columns_key(&b));
        assert_ne!(columns_key(&a), columns_key(&c));
    }
}
