//! One build at a time per lake. Two builds of the same lake at once (a
//! nightly run overlapping a manual one, two CI jobs) would each read the
//! same new files and append them twice; so a build holds the lake's lock
//! from before it reads anything until it ends, and a second build stops
//! at once with a clear error naming the first.
//!
//! The lock is a numbered record in the lake itself,
//! `<lake>/_etl/lock/<n>.json`, so that it works wherever the lake is
//! (local disk, S3, GCS, Azure) with no lock service: a build takes number
//! `n + 1` with a create-if-absent put (`If-None-Match: *` on object
//! stores, a hard link on local disk), which exactly one builder wins,
//! once number `n` is released or its holder is gone. The holder renews
//! its record while it runs and marks it released when it ends. A holder
//! killed by `kill -9` or a crash cannot release it: on the machine that
//! ran it, its process is seen to be gone at once; from another machine,
//! its lock lapses a minute after its last renewal.
//!
//! The lock keeps builds from overlapping; it is not what keeps data
//! right. Each commit is also refused when its table moved on since the
//! build read it (see `Commit::expected_version`), so a holder that stalled
//! past its lease still cannot commit over the build that took over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long a lock lasts without renewal, when its holder ran on another
/// machine.
const LEASE: Duration = Duration::from_secs(60);
/// How often the holder renews it.
const RENEWAL: Duration = Duration::from_secs(15);

/// Who holds, or held, a lake's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// What it runs: `build`, `run`, `test`, ...
    pub command: String,
    pub invocation_id: String,
    pub host: String,
    /// The boot of the machine it ran on: a process of an earlier boot is
    /// gone whatever its number.
    #[serde(default)]
    pub boot_id: Option<String>,
    pub pid: u32,
    /// When the process started (clock ticks since boot): a new process
    /// that got the same number is another one.
    #[serde(default)]
    pub pid_start: Option<u64>,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    #[serde(default)]
    pub released: bool,
}

impl Holder {
    /// This process, about to run `command`.
    pub fn this_process(command: &str, invocation_id: &str) -> Holder {
        let now = Utc::now();
        Holder {
            command: command.to_owned(),
            invocation_id: invocation_id.to_owned(),
            host: host_name(),
            boot_id: boot_id(),
            pid: std::process::id(),
            pid_start: process_start(std::process::id()),
            acquired_at: now,
            renewed_at: now,
            released: false,
        }
    }

    /// Whether the holder may still be running.
    fn alive(&self, now: DateTime<Utc>) -> bool {
        if self.released {
            return false;
        }
        let here = self.host == host_name() && self.boot_id.is_some() && self.boot_id == boot_id();
        if here && self.pid_start.is_some() {
            // Same machine, same boot: the process is there or not.
            return process_start(self.pid) == self.pid_start;
        }
        if self.host == host_name() && self.boot_id.is_some() && boot_id().is_some() && self.boot_id != boot_id() {
            return false;
        }
        let silent = now.signed_duration_since(self.renewed_at);
        silent.to_std().map_or(true, |silent| silent < LEASE)
    }
}

/// Why a lake's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another etl process holds the lake")]
    Held(Box<Holder>),
    #[error("{0}")]
    Store(String),
}

/// The lock of a lake, held until [`LakeLock::release`] (or the process
/// ends).
pub struct LakeLock {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    holder: Holder,
    renewal: tokio::task::JoinHandle<()>,
}

/// Takes the lock of the lake at `root` for `holder`.
pub async fn acquire(ctx: &SessionContext, root: &Url, holder: Holder) -> Result<LakeLock, LockError> {
    let store = super::store_for(ctx, root).map_err(LockError::Store)?;
    let folder =
        StorePath::from_url_path(format!("{}_etl/lock/", root.path())).map_err(|e| LockError::Store(e.to_string()))?;
    // Two tries: a build that loses the race for a number to a build
    // that has since finished tries the next one.
    for _ in 0..2 {
        let latest = latest(&store, &folder).await?;
        let next = match &latest {
            Some((n, record)) => {
                if record.alive(Utc::now()) {
                    return Err(LockError::Held(Box::new(record.clone())));
                }
                n + 1
            }
            None => 1,
        };
        let path = folder.clone().join(format!("{next:020}.json"));
        let body = serde_json::to_vec_pretty(&holder).map_err(|e| LockError::Store(e.to_string()))?;
        match store
            .put_opts(&path, PutPayload::from(body), PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => {
                // Records before the one just replaced are history.
                if let Some((n, _)) = latest {
                    forget_before(&store, &folder, n).await;
                }
                let renewal = tokio::spawn(renew(store.clone(), path.clone(), holder.clone()));
                return Ok(LakeLock {
                    store,
                    path,
                    holder,
                    renewal,
                });
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                if let Some(record) = read(&store, &path).await? {
                    if record.alive(Utc::now()) {
                        return Err(LockError::Held(Box::new(record)));
                    }
                }
            }
            Err(e) => return Err(LockError::Store(format!("`{path}`: {}", super::with_root_cause(&e)))),
        }
    }
    Err(LockError::Store(
        "the lock of the lake changed hands twice while this build tried to take it".into(),
    ))
}

impl LakeLock {
    /// Marks the lock released, for the next build to take at once.
    pub async fn release(self) {
        // Stopped, and waited for: a renewal landing after the release
        // would mark the lock held again.
        self.renewal.abort();
        let _ = self.renewal.await;
        let released = Holder {
            released: true,
            renewed_at: Utc::now(),
            ..self.holder
        };
        if let Ok(body) = serde_json::to_vec_pretty(&released) {
            // A release that fails leaves a record whose process is gone:
            // on this machine the next build sees that at once.
            let _ = self.store.put(&self.path, PutPayload::from(body)).await;
        }
    }
}

/// The highest-numbered record of the lock, if any.
async fn latest(store: &Arc<dyn ObjectStore>, folder: &StorePath) -> Result<Option<(u64, Holder)>, LockError> {
    for _ in 0..5 {
        let objects: Vec<_> = store
            .list(Some(folder))
            .try_collect()
            .await
            .map_err(|e| LockError::Store(format!("cannot list `{folder}`: {}", super::with_root_cause(&e))))?;
        let Some((n, path)) = objects
            .into_iter()
            .filter_map(|o| Some((number(&o.location)?, o.location)))
            .max_by_key(|(n, _)| *n)
        else {
            return Ok(None);
        };
        // Gone since the listing: a build took a later number and removed
        // the older records. List again (numbers are never reused).
        if let Some(holder) = read(store, &path).await? {
            return Ok(Some((n, holder)));
        }
    }
    Err(LockError::Store(format!(
        "the records of `{folder}` kept changing while this build read them"
    )))
}

async fn read(store: &Arc<dyn ObjectStore>, path: &StorePath) -> Result<Option<Holder>, LockError> {
    match store.get(path).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| LockError::Store(format!("`{path}`: {}", super::with_root_cause(&e))))?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LockError::Store(format!("`{path}` is not a lock record etl can read: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(LockError::Store(format!("`{path}`: {}", super::with_root_cause(&e)))),
    }
}

fn number(path: &StorePath) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

async fn forget_before(store: &Arc<dyn ObjectStore>, folder: &StorePath, n: u64) {
    let Ok(objects) = store.list(Some(folder)).try_collect::<Vec<_>>().await else {
        return;
    };
    for object in objects {
        if number(&object.location).is_some_and(|m| m < n) {
            let _ = store.delete(&object.location).await;
        }
    }
}

/// Renews the record every `RENEWAL` until aborted.
async fn renew(store: Arc<dyn ObjectStore>, path: StorePath, mut holder: Holder) {
    loop {
        tokio::time::sleep(RENEWAL).await;
        holder.renewed_at = Utc::now();
        let Ok(body) = serde_json::to_vec_pretty(&holder) else {
            return;
        };
        if let Err(e) = store.put(&path, PutPayload::from(body)).await {
            tracing::warn!(
                "could not renew the lake's lock at `{path}`: {}",
                super::with_root_cause(&e)
            );
        }
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// When process `pid` started, in clock ticks since boot (the 22nd field
/// of `/proc/<pid>/stat`); `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How the lock's holder is described to a build that found it taken.
pub fn describe(holder: &Holder) -> String {
    let ago = Utc::now().signed_duration_since(holder.acquired_at);
    format!(
        "`etl {}` (invocation {}, process {} on `{}`) has held it since {} ({} s ago)",
        holder.command,
        holder.invocation_id,
        holder.pid,
        holder.host,
        holder.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
        ago.num_seconds().max(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionContext {
        crate::plan::new_session(&crate::plan::SessionOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn a_second_build_is_refused_until_the_first_releases_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        let first = acquire(&ctx, &root, Holder::this_process("build", "a")).await.unwrap();
        match acquire(&ctx, &root, Holder::this_process("build", "b")).await {
            Err(LockError::Held(holder)) => assert_eq!(holder.invocation_id, "a"),
            other => panic!("expected the lock held by a, got {:?}", other.map(|l| l.holder)),
        }
        first.release().await;
        let second = acquire(&ctx, &root, Holder::this_process("build", "b")).await.unwrap();
        assert_eq!(second.path.filename(), Some("00000000000000000002.json"));
        second.release().await;
    }

    #[tokio::test]
    async fn builds_racing_for_a_free_lake_end_with_one_holder() {
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        for round in 0..10 {
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let mut tasks = Vec::new();
            for i in 0..4 {
                let (ctx, root, barrier) = (ctx.clone(), root.clone(), barrier.clone());
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    acquire(&ctx, &root, Holder::this_process("build", &format!("{round}-{i}"))).await
                }));
            }
            let mut held = Vec::new();
            for task in tasks {
                match task.await.unwrap() {
                    Ok(lock) => held.push(lock),
                    Err(LockError::Held(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(held.len(), 1, "round {round}: one winner");
            held.pop().unwrap().release().await;
        }
    }

    #[tokio::test]
    async fn the_lock_of_a_process_that_is_gone_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        // A killed build: its record says running, its process is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            pid,
            pid_start: Some(1),
            ..Holder::this_process("build", "killed")
        };
        let folder = dir.path().join("_etl/lock");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{:020}.json", 7)),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        let lock = acquire(&ctx, &root, Holder::this_process("build", "next"))
            .await
            .unwrap();
        assert_eq!(lock.path.filename(), Some("00000000000000000008.json"));
        lock.release().await;

        // One of another machine that stopped renewing lapses after the
        // lease; one renewed just now does not.
        let elsewhere = |renewed_at| Holder {
            host: "elsewhere".into(),
            renewed_at,
            ..Holder::this_process("build", "remote")
        };
        assert!(elsewhere(Utc::now()).alive(Utc::now()));
        let silent = Utc::now() - chrono::Duration::seconds(LEASE.as_secs() as i64 + 1);
        assert!(!elsewhere(silent).alive(Utc::now()));
        assert!(Holder::this_process("build", "me").alive(Utc::now()));
    }
}
