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
//! ran it (same host, boot and process namespace), its process is seen to
//! be gone at once; from anywhere else, its lock lapses a minute after
//! the store last wrote its record (the store's clock, not the holder's).
//!
//! The lock keeps builds from overlapping; it is not what keeps data
//! right. Each commit is also refused when another build committed the
//! same model since this one read its table (see `Commit::check`), so a
//! holder that stalled past its lease still cannot commit over the build
//! that took over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long a lock lasts without renewal, seen from another machine.
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
    /// The boot of the machine it ran on.
    #[serde(default)]
    pub boot_id: Option<String>,
    pub pid: u32,
    /// The process-ID namespace it ran in (`/proc/self/ns/pid`): in
    /// another one (a container sharing the host's name and boot), its
    /// number means nothing here.
    #[serde(default)]
    pub pid_namespace: Option<String>,
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
            pid_namespace: pid_namespace(),
            pid_start: process_start(std::process::id()),
            acquired_at: now,
            renewed_at: now,
            released: false,
        }
    }

    /// Whether the holder may still be running, its record last written
    /// by the store at `written`, seen `now`.
    fn alive(&self, written: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if self.released {
            return false;
        }
        // The same machine, boot and process namespace: the process is
        // there or it is not.
        let here = self.host == host_name()
            && self.boot_id.is_some()
            && self.boot_id == boot_id()
            && self.pid_namespace.is_some()
            && self.pid_namespace == pid_namespace();
        if here {
            if let Some(running) = process_running(self.pid, self.pid_start) {
                return running;
            }
        }
        // Elsewhere, or not to be told here: alive while it renews.
        now.signed_duration_since(written)
            .to_std()
            .map_or(true, |silent| silent < LEASE)
    }
}

/// The lock is held by another process: who, and where its record is.
#[derive(Debug, Clone)]
pub struct Held {
    pub holder: Holder,
    /// The URL of its record.
    pub record: String,
}

/// Why a lake's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another etl process holds the lake")]
    Held(Box<Held>),
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
    /// Held by each renewal's write, and by the release, which sets it:
    /// no renewal lands after the release.
    released: Arc<tokio::sync::Mutex<bool>>,
}

/// A record of the lock as read: its number, its holder, and when the
/// store last wrote it.
struct Record {
    number: u64,
    path: StorePath,
    holder: Holder,
    written: DateTime<Utc>,
}

impl Record {
    fn alive(&self) -> bool {
        self.holder.alive(self.written, Utc::now())
    }
}

/// Takes the lock of the lake at `root` for `holder`.
pub async fn acquire(ctx: &SessionContext, root: &Url, holder: Holder) -> Result<LakeLock, LockError> {
    let store = super::store_for(ctx, root).map_err(|e| LockError::Store(e.to_string()))?;
    let folder =
        StorePath::from_url_path(format!("{}_etl/lock/", root.path())).map_err(|e| LockError::Store(e.to_string()))?;
    let held = |record: Record| {
        LockError::Held(Box::new(Held {
            holder: record.holder,
            record: super::object_url(root, &record.path),
        }))
    };
    // Three tries: a build that loses the race for a number to a build
    // that has since finished tries the next one.
    for _ in 0..3 {
        let before = latest(&store, &folder).await?;
        let next = match before {
            Some(record) if record.alive() => return Err(held(record)),
            Some(ref record) => record.number + 1,
            None => 1,
        };
        let path = folder.clone().join(format!("{next:020}.json"));
        let body = serde_json::to_vec_pretty(&holder).map_err(|e| LockError::Store(e.to_string()))?;
        let put = store
            .put_opts(&path, PutPayload::from(body), PutOptions::from(PutMode::Create))
            .await;
        let created = match put {
            Ok(_) => true,
            Err(object_store::Error::AlreadyExists { .. }) => match read(&store, &path, next).await? {
                // A create retried after its first attempt went through (a
                // 5xx answer to a put that was made) finds its own record.
                Some(record) if record.holder.invocation_id == holder.invocation_id => true,
                Some(record) if record.alive() => return Err(held(record)),
                _ => false,
            },
            Err(e) => return Err(LockError::Store(format!("`{path}`: {}", super::with_root_cause(&e)))),
        };
        if !created {
            continue;
        }
        // A builder that stalled between its listing and its create can
        // create a number a later builder has already passed (records
        // below the latest are removed, so numbers can come free again):
        // then a higher number exists, and this record is not the lock.
        if let Some(later) = latest(&store, &folder).await?.filter(|r| r.number > next) {
            let _ = store.delete(&path).await;
            if later.alive() {
                return Err(held(later));
            }
            continue;
        }
        // Records before the one just replaced are history.
        if let Some(record) = before {
            forget_before(&store, &folder, record.number).await;
        }
        let released = Arc::new(tokio::sync::Mutex::new(false));
        let renewal = tokio::spawn(renew(store.clone(), path.clone(), holder.clone(), released.clone()));
        return Ok(LakeLock {
            store,
            path,
            holder,
            renewal,
            released,
        });
    }
    Err(LockError::Store(
        "the lock of the lake changed hands three times while this build tried to take it".into(),
    ))
}

impl LakeLock {
    /// Marks the lock released, for the next build to take at once.
    pub async fn release(self) {
        let mut released = self.released.lock().await;
        *released = true;
        self.renewal.abort();
        let record = Holder {
            released: true,
            renewed_at: Utc::now(),
            ..self.holder
        };
        if let Ok(body) = serde_json::to_vec_pretty(&record) {
            // A release that fails leaves a record whose process is gone:
            // on this machine the next build sees that at once.
            let _ = self.store.put(&self.path, PutPayload::from(body)).await;
        }
    }
}

/// The highest-numbered record of the lock, if any.
async fn latest(store: &Arc<dyn ObjectStore>, folder: &StorePath) -> Result<Option<Record>, LockError> {
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
        // the older records. List again.
        if let Some(record) = read(store, &path, n).await? {
            return Ok(Some(record));
        }
    }
    Err(LockError::Store(format!(
        "the records of `{folder}` kept changing while this build read them"
    )))
}

async fn read(store: &Arc<dyn ObjectStore>, path: &StorePath, number: u64) -> Result<Option<Record>, LockError> {
    let failed = |e: object_store::Error| LockError::Store(format!("`{path}`: {}", super::with_root_cause(&e)));
    match store.get(path).await {
        Ok(got) => {
            let written = got.meta.last_modified;
            let bytes = got.bytes().await.map_err(failed)?;
            let holder = serde_json::from_slice(&bytes)
                .map_err(|e| LockError::Store(format!("`{path}` is not a lock record etl can read: {e}")))?;
            Ok(Some(Record {
                number,
                path: path.clone(),
                holder,
                written,
            }))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(failed(e)),
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

/// Renews the record every `RENEWAL` until released.
async fn renew(
    store: Arc<dyn ObjectStore>,
    path: StorePath,
    mut holder: Holder,
    released: Arc<tokio::sync::Mutex<bool>>,
) {
    loop {
        tokio::time::sleep(RENEWAL).await;
        let released = released.lock().await;
        if *released {
            return;
        }
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

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The state letter and the fields after the command name of
/// `/proc/<pid>/stat` (the name, in parentheses, may hold spaces).
fn process_stat(pid: u32) -> Option<(char, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields))
}

/// When process `pid` started, in clock ticks since boot (the 22nd field
/// of `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid)?.1.get(19)?.parse().ok()
}

/// Whether process `pid`, started at `start`, runs on this machine:
/// `Some(false)` when it is gone, a zombie, or another process that got
/// its number; `Some(true)` when it runs; `None` when that cannot be told.
fn process_running(pid: u32, start: Option<u64>) -> Option<bool> {
    let pid_t = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: signal 0 sends nothing; it only checks the process exists.
    if unsafe { libc::kill(pid_t, 0) } != 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => Some(false),
            // EPERM: it exists, another user's.
            Some(libc::EPERM) => Some(true),
            _ => None,
        };
    }
    match process_stat(pid) {
        Some(('Z', _)) => Some(false),
        Some((_, fields)) => {
            let now: Option<u64> = fields.get(19).and_then(|f| f.parse().ok());
            Some(start.is_none() || now.is_none() || now == start)
        }
        // It exists, but /proc hides it (`hidepid`): running.
        None => Some(true),
    }
}

/// How the lock's holder is described to a build that found it taken.
pub fn describe(held: &Held) -> String {
    let holder = &held.holder;
    let ago = Utc::now().signed_duration_since(holder.acquired_at);
    format!(
        "`etl {}` (invocation {}, process {} on `{}`) has held it since {} ({} s ago); its record is `{}`",
        holder.command,
        holder.invocation_id,
        holder.pid,
        holder.host,
        holder.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
        ago.num_seconds().max(0),
        held.record
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lake::tests::session;

    fn write_record(dir: &std::path::Path, number: u64, holder: &Holder) {
        let folder = dir.join("_etl/lock");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{number:020}.json")),
            serde_json::to_vec(holder).unwrap(),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_second_build_is_refused_until_the_first_releases_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        let first = acquire(&ctx, &root, Holder::this_process("build", "a")).await.unwrap();
        match acquire(&ctx, &root, Holder::this_process("build", "b")).await {
            Err(LockError::Held(held)) => {
                assert_eq!(held.holder.invocation_id, "a");
                assert!(
                    held.record.ends_with("/_etl/lock/00000000000000000001.json"),
                    "{}",
                    held.record
                );
            }
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
    async fn a_builder_that_stalled_before_its_create_does_not_take_a_number_already_passed() {
        // E listed number 3 released and stalled; meanwhile builds took 4
        // and 5 and removed 3 and 4. E's create of 4 succeeds: it must
        // still see 5 and stand back.
        let dir = tempfile::tempdir().unwrap();
        let root = Url::from_directory_path(dir.path()).unwrap();
        let ctx = session();
        write_record(dir.path(), 5, &Holder::this_process("build", "later"));
        let store = super::super::store_for(&ctx, &root).unwrap();
        let folder = StorePath::from_url_path(format!("{}_etl/lock/", root.path())).unwrap();
        let stale = folder.clone().join(format!("{:020}.json", 4));
        let body = serde_json::to_vec(&Holder::this_process("build", "stalled")).unwrap();
        store
            .put_opts(&stale, PutPayload::from(body), PutOptions::from(PutMode::Create))
            .await
            .unwrap();
        // The check E makes after its create.
        let later = latest(&store, &folder).await.unwrap().unwrap();
        assert_eq!((later.number, later.holder.invocation_id.as_str()), (5, "later"));
        // And a whole acquire now refuses, naming 5.
        match acquire(&ctx, &root, Holder::this_process("build", "new")).await {
            Err(LockError::Held(held)) => assert_eq!(held.holder.invocation_id, "later"),
            other => panic!("expected the lock held by `later`, got {:?}", other.map(|l| l.holder)),
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
        write_record(dir.path(), 7, &dead);
        let lock = acquire(&ctx, &root, Holder::this_process("build", "next"))
            .await
            .unwrap();
        assert_eq!(lock.path.filename(), Some("00000000000000000008.json"));
        lock.release().await;

        // A record written elsewhere lapses a lease after the store last
        // wrote it, whatever the holder's clock said; one written just now
        // does not. A process of this machine in another namespace is
        // judged the same way.
        let now = Utc::now();
        let remote = Holder {
            host: "elsewhere".into(),
            renewed_at: now + chrono::Duration::hours(5),
            ..Holder::this_process("build", "remote")
        };
        assert!(remote.alive(now, now));
        let lapsed = now - chrono::Duration::seconds(LEASE.as_secs() as i64 + 1);
        assert!(
            !remote.alive(lapsed, now),
            "a holder's clock ahead does not keep it alive"
        );
        let other_namespace = Holder {
            pid_namespace: Some("pid:[1]".into()),
            ..dead
        };
        assert!(other_namespace.alive(now, now));
        assert!(Holder::this_process("build", "me").alive(lapsed, now));
    }
}
