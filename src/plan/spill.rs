//! Where a build's operators spill, and how much of that disk they may
//! take. DataFusion stops a spill at `max_temp_directory_size`, 100 GiB
//! whatever the disk holds: on a disk with less free, a sort that spilled
//! past it failed on "No space left on device" after filling the disk,
//! where the lake (when it is local) and every other process write too.
//! For as long as a build runs, [`SpillRoom`] keeps that limit at what
//! the disk has free beside the spill files, less a reserve, and warns
//! once the spill files hold half of it.
//!
//! The spill directory and the limit are DataFusion's runtime settings,
//! taken from the environment under DataFusion's names:
//! `DATAFUSION_RUNTIME_TEMP_DIRECTORY` (the system's temporary folder,
//! `TMPDIR`, when unset) and `DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE`
//! (a cap under the disk's room).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::error::Result;
use datafusion::execution::disk_manager::{DEFAULT_MAX_TEMP_DIRECTORY_SIZE, DiskManager};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::diagnostic::{Code, Diagnostic};

/// The disk space never given to spills: a 20th of the disk, at most
/// 1 GiB, for the lake's writes and the rest of the machine.
const RESERVE: u64 = 1 << 30;

/// Spills below this size are not worth a warning, however small the
/// disk.
const WARN_FROM: u64 = 64 << 20;

/// What DataFusion's error says when a spill would pass the limit.
pub const SPILL_LIMIT_ERROR: &str = "exceeded the allowable limit";

/// How often a build looks at its spill files and the disk's free space.
const EVERY: Duration = Duration::from_millis(250);

/// Where a session spills and the cap the user set, kept in its config
/// for [`SpillRoom`].
#[derive(Debug, Clone, PartialEq)]
struct SpillPlace {
    /// `DATAFUSION_RUNTIME_TEMP_DIRECTORY`; the system's temporary folder
    /// when `None`.
    directory: Option<PathBuf>,
    /// `DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE`; DataFusion's
    /// default when `None`.
    cap: Option<u64>,
}

/// DataFusion's runtime settings from the environment
/// (`DATAFUSION_RUNTIME_TEMP_DIRECTORY=/mnt/scratch`), parsed as
/// DataFusion parses them in `SET datafusion.runtime.…`. The memory
/// limit is etl's own (`--memory-limit`): setting DataFusion's is an
/// error rather than a setting quietly overridden.
pub(super) fn runtime_from_env(
    runtime: RuntimeEnvBuilder,
    config: SessionConfig,
) -> Result<(RuntimeEnvBuilder, SessionConfig)> {
    // Only etl's variables are read as text: another one that is not
    // UTF-8 is none of its business.
    let mut vars = Vec::new();
    for (var, value) in std::env::vars_os() {
        let Some(var) = var.to_str().filter(|v| v.starts_with(PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|value| {
            datafusion::error::DataFusionError::Configuration(format!(
                "`{var}={}` in the environment: not UTF-8",
                value.to_string_lossy()
            ))
        })?;
        vars.push((var.to_owned(), value));
    }
    runtime_from(runtime, config, vars.into_iter())
}

const PREFIX: &str = "DATAFUSION_RUNTIME_";

fn runtime_from(
    mut runtime: RuntimeEnvBuilder,
    config: SessionConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(RuntimeEnvBuilder, SessionConfig)> {
    let mut place = SpillPlace {
        directory: None,
        cap: None,
    };
    let mut vars: Vec<(String, String)> = vars.filter(|(var, _)| var.starts_with(PREFIX)).collect();
    vars.sort();
    for (var, value) in vars {
        let key = format!("datafusion.runtime.{}", var[PREFIX.len()..].to_lowercase());
        let context = |e: datafusion::error::DataFusionError| e.context(format!("`{var}={value}` in the environment"));
        let capacity = || SessionContext::parse_capacity_limit(&key, &value).map_err(context);
        let invalid = |why: String| context(datafusion::error::DataFusionError::Configuration(why));
        runtime = match &key["datafusion.runtime.".len()..] {
            "temp_directory" => {
                place.directory = Some(PathBuf::from(&value));
                runtime.with_temp_file_path(&value)
            }
            "max_temp_directory_size" => {
                let cap = capacity()? as u64;
                place.cap = Some(cap);
                runtime.with_max_temp_directory_size(cap)
            }
            "max_spill_merge_fan_in" => {
                let fan_in = value
                    .parse::<usize>()
                    .map_err(|e| invalid(format!("not a whole number: {e}")))?;
                runtime.with_max_spill_merge_fan_in(fan_in)
            }
            "metadata_cache_limit" => runtime.with_metadata_cache_limit(capacity()?),
            "file_statistics_cache_limit" => runtime.with_file_statistics_cache_limit(capacity()?),
            "list_files_cache_limit" => runtime.with_object_list_cache_limit(capacity()?),
            "list_files_cache_ttl" => {
                let ttl = duration(&value)
                    .ok_or_else(|| invalid("not a duration: minutes then seconds, as `1m30s`, `90s` or `2m`".into()))?;
                runtime.with_object_list_cache_ttl(Some(ttl))
            }
            "memory_limit" => {
                return Err(invalid(
                    "etl sets the memory limit itself: use `--memory-limit` (or the target's `memory_limit:`), \
                     or ETL_DEFAULT_MEMORY_LIMIT for the machine's default"
                        .into(),
                ));
            }
            _ => {
                return Err(invalid(
                    "not a runtime setting of DataFusion's that etl takes: temp_directory, \
                     max_temp_directory_size, max_spill_merge_fan_in, metadata_cache_limit, \
                     file_statistics_cache_limit, list_files_cache_limit and list_files_cache_ttl are"
                        .into(),
                ));
            }
        };
    }
    Ok((runtime, config.with_extension(Arc::new(place))))
}

/// A duration as DataFusion writes one: minutes then seconds (`1m30s`,
/// `90s`, `2m`), not zero.
fn duration(text: &str) -> Option<Duration> {
    let (minutes, rest) = match text.split_once('m') {
        Some((m, rest)) => (m.parse::<u64>().ok()?, rest),
        None => (0, text),
    };
    let seconds = match rest {
        "" => 0,
        rest => rest.strip_suffix('s')?.parse::<u64>().ok()?,
    };
    let seconds = minutes.checked_mul(60)?.checked_add(seconds)?;
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// A build's watch over its spill files (see the module's comment).
#[derive(Debug)]
pub struct SpillRoom {
    disk: Arc<DiskManager>,
    /// The folder spill files go to.
    dir: PathBuf,
    /// The user's cap; DataFusion's default when `None`.
    cap: Option<u64>,
    /// Whether the disk (rather than the cap) set the limit last.
    disk_bound: AtomicBool,
    warned: AtomicBool,
    warning: Mutex<Option<Diagnostic>>,
}

/// While it lives, a thread keeps [`SpillRoom`]'s limit on the disk's
/// free space; dropped, it stops (within [`EVERY`]).
#[derive(Debug)]
pub struct Watching {
    stop: Arc<AtomicBool>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl SpillRoom {
    /// The spill room of `ctx`'s session, its limit set from the disk's
    /// free space now.
    pub fn of(ctx: &SessionContext) -> Arc<SpillRoom> {
        let place = ctx.state_ref().read().config().get_extension::<SpillPlace>();
        let disk = Arc::clone(&ctx.runtime_env().disk_manager);
        let dir = place
            .as_ref()
            .and_then(|p| p.directory.clone())
            .unwrap_or_else(std::env::temp_dir);
        let room = Arc::new(SpillRoom {
            disk,
            dir,
            cap: place.and_then(|p| p.cap),
            disk_bound: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warning: Mutex::new(None),
        });
        room.look();
        room
    }

    /// Looks every quarter of a second until the returned guard is
    /// dropped, on a thread of its own: `statvfs` of a network disk can
    /// block, and the build's tasks should not wait on it.
    pub fn watching(self: &Arc<Self>) -> Watching {
        let stop = Arc::new(AtomicBool::new(false));
        let room = Arc::clone(self);
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("etl-spill-room".into())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    room.look();
                    std::thread::sleep(EVERY);
                }
            });
        if let Err(e) = spawned {
            // The limit set when the build started holds.
            tracing::debug!("cannot watch the spill folder's disk: {e}");
        }
        Watching { stop }
    }

    /// The warning given while the build ran, if any.
    pub fn warning(&self) -> Option<Diagnostic> {
        self.warning.lock().expect("spill warning poisoned").clone()
    }

    /// What a node whose spill failed should be told, if its error is a
    /// spill's (DataFusion's message gives the limit): what set the limit,
    /// where, and what to change.
    pub fn explain(&self, message: &str) -> Option<(String, String)> {
        let dir = self.dir.display();
        if message.contains(SPILL_LIMIT_ERROR) {
            if self.disk_bound.load(Ordering::SeqCst) {
                let reserve = reserve_of(free_space(&self.dir).map_or(0, |(_, size)| size));
                let why = format!(
                    "spill files may take what the disk of {dir} has free, less {} kept for the lake and the \
                     rest of the machine",
                    bytes_text(reserve)
                );
                return Some((why, move_or_more_memory()));
            }
            let (why, help) = match self.cap {
                Some(cap) => (
                    format!(
                        "spill files may take at most {} in {dir} (DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE)",
                        bytes_text(cap)
                    ),
                    "raise DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE, or give the build more memory \
                     (`--memory-limit`) so that less spills",
                ),
                None => (
                    format!(
                        "spill files may take at most {} in {dir} (DataFusion's cap)",
                        bytes_text(DEFAULT_MAX_TEMP_DIRECTORY_SIZE)
                    ),
                    "set DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE higher, or give the build more memory \
                     (`--memory-limit`) so that less spills",
                ),
            };
            return Some((why, help.into()));
        }
        if message.contains("No space left on device") {
            // The lake's disk, `target/`'s or the spill folder's: spill
            // files are already gone when the error is read.
            let why = format!(
                "a disk is full: the lake's, the project's or the spill folder's ({dir}, kept to its free space \
                 less a reserve)"
            );
            return Some((why, "free space on that disk, then build again".into()));
        }
        None
    }

    /// Sets the limit from the disk's free space now, and warns once
    /// the spill files hold half of it.
    fn look(&self) {
        let used = self.disk.used_disk_space();
        let Some((free, size)) = free_space(&self.dir) else {
            return;
        };
        let cap = self.cap.unwrap_or(DEFAULT_MAX_TEMP_DIRECTORY_SIZE);
        let limit = limit(cap, used, free, size);
        self.disk_bound.store(limit < cap, Ordering::SeqCst);
        // Only fails on a disk manager that cannot spill: nothing to limit.
        let _ = self.disk.set_max_temp_directory_size(limit);
        if !should_warn(cap, limit, used) || self.warned.swap(true, Ordering::SeqCst) {
            return;
        }
        let message = format!(
            "spill files hold {} in {}, of the {} that disk has room for (keeping {} free); a query that needs \
             more fails",
            bytes_text(used),
            self.dir.display(),
            bytes_text(limit),
            bytes_text(reserve_of(size))
        );
        tracing::warn!("{message}");
        let diagnostic = Diagnostic::warning(Code::SpillSpace, message).with_help(move_or_more_memory());
        *self.warning.lock().expect("spill warning poisoned") = Some(diagnostic);
    }
}

fn move_or_more_memory() -> String {
    "point DATAFUSION_RUNTIME_TEMP_DIRECTORY (or TMPDIR) at a disk with more room, or give the build more memory \
     (`--memory-limit`) so that less spills"
        .into()
}

/// The spill limit with `used` bytes spilled and `free` bytes free on a
/// disk of `size`: what the spill files hold and what is free, less the
/// reserve; never above the user's `cap`.
fn limit(cap: u64, used: u64, free: u64, size: u64) -> u64 {
    cap.min(used + free.saturating_sub(reserve_of(size)))
}

fn reserve_of(size: u64) -> u64 {
    (size / 20).min(RESERVE)
}

/// Whether `used` bytes of spill files are worth a warning under `limit`:
/// half of it, when the disk (not the user's cap) set it.
fn should_warn(cap: u64, limit: u64, used: u64) -> bool {
    limit < cap && used >= WARN_FROM && used >= limit / 2
}

/// The bytes free to an unprivileged writer on the disk holding `dir`
/// (or its nearest existing parent), and the disk's size.
fn free_space(dir: &Path) -> Option<(u64, u64)> {
    let dir = dir.ancestors().find(|d| d.exists())?;
    statvfs(dir)
}

#[cfg(unix)]
fn statvfs(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string and `stat` a plain struct
    // statvfs fills; it is read only when the call succeeded.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // The fragment size is the unit of the counts; 0 on old systems,
    // where the block size is.
    let block = if stat.f_frsize > 0 { stat.f_frsize } else { stat.f_bsize } as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

#[cfg(not(unix))]
fn statvfs(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// `bytes` for a message: `2.0 GiB`, `512 MiB`, `300 KiB`.
pub fn bytes_text(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_limit_is_what_is_free_beside_the_spills_less_the_reserve() {
        let cap = DEFAULT_MAX_TEMP_DIRECTORY_SIZE;
        // 79 GiB free of 252: 1 GiB kept.
        assert_eq!(limit(cap, 0, 79 * GIB, 252 * GIB), 78 * GIB);
        // Spills already written count as room of theirs.
        assert_eq!(limit(cap, 10 * GIB, 69 * GIB, 252 * GIB), 78 * GIB);
        // A 10 GiB disk keeps a 20th.
        assert_eq!(limit(cap, 0, 4 * GIB, 10 * GIB), 4 * GIB - GIB / 2);
        // A full disk: what is spilled stays, nothing more.
        assert_eq!(limit(cap, 3 * GIB, 0, 252 * GIB), 3 * GIB);
        // The user's cap holds under a larger disk.
        assert_eq!(limit(2 * GIB, 0, 79 * GIB, 252 * GIB), 2 * GIB);
    }

    #[test]
    fn a_warning_comes_at_half_the_disk_room_and_not_for_the_users_cap() {
        let cap = DEFAULT_MAX_TEMP_DIRECTORY_SIZE;
        assert!(!should_warn(cap, 10 * GIB, 4 * GIB));
        assert!(should_warn(cap, 10 * GIB, 5 * GIB));
        // The user chose the cap: reaching it is an error, not news.
        assert!(!should_warn(10 * GIB, 10 * GIB, 9 * GIB));
        // A few megabytes on a small disk are not worth one.
        assert!(!should_warn(cap, 40 << 20, 30 << 20));
    }

    #[test]
    fn the_free_space_of_a_folder_not_made_yet_is_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let (free, size) = free_space(&dir.path().join("not/yet")).expect("statvfs");
        assert!(size > 0 && free <= size, "{free} of {size}");
    }

    fn runtime_of(vars: &[(&str, &str)]) -> Result<(Arc<DiskManager>, SpillPlace)> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let (runtime, config) = runtime_from(RuntimeEnvBuilder::new(), SessionConfig::new(), vars)?;
        let place = SpillPlace::clone(&config.get_extension::<SpillPlace>().unwrap());
        Ok((runtime.build_arc()?.disk_manager.clone(), place))
    }

    #[test]
    fn the_environment_says_where_spills_go_and_how_much_they_may_take() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, place) = runtime_of(&[
            ("DATAFUSION_RUNTIME_TEMP_DIRECTORY", dir.path().to_str().unwrap()),
            ("DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE", "2G"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert!(disk.temp_dir_paths()[0].starts_with(dir.path()));
        assert_eq!(disk.max_temp_directory_size(), 2 * GIB);
        assert_eq!(
            (place.directory.as_deref(), place.cap),
            (Some(dir.path()), Some(2 * GIB))
        );
        // Without them: the system's folder, DataFusion's cap.
        let (disk, place) = runtime_of(&[]).unwrap();
        assert!(disk.temp_dir_paths().is_empty());
        assert_eq!((place.directory, place.cap), (None, None));
    }

    #[test]
    fn durations_are_written_as_datafusion_writes_them() {
        assert_eq!(duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
        for bad in ["", "0s", "30", "s", "30s1m", "1h", "-1s"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
        let (runtime, _) = runtime_from(
            RuntimeEnvBuilder::new(),
            SessionConfig::new(),
            [("DATAFUSION_RUNTIME_LIST_FILES_CACHE_TTL".to_owned(), "1m".to_owned())].into_iter(),
        )
        .unwrap();
        let ttl = runtime.build().unwrap().cache_manager.get_list_files_cache_ttl();
        assert_eq!(ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_runtime_setting_etl_does_not_take_is_an_error_naming_it() {
        let err = runtime_of(&[("DATAFUSION_RUNTIME_MEMORY_LIMIT", "4G")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`DATAFUSION_RUNTIME_MEMORY_LIMIT=4G` in the environment"),
            "{err}"
        );
        assert!(err.contains("use `--memory-limit`"), "{err}");
        let err = runtime_of(&[("DATAFUSION_RUNTIME_SPILL_SPEED", "fast")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`DATAFUSION_RUNTIME_SPILL_SPEED=fast`")
                && err.contains("not a runtime setting of DataFusion's that etl takes"),
            "{err}"
        );
        let err = runtime_of(&[("DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE", "lots")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE=lots`"),
            "{err}"
        );
    }
}
