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

/// How often a build looks at its spill files and the disk's free space.
const EVERY: Duration = Duration::from_millis(250);

/// Where a session spills and the cap the user set, kept in its config
/// for [`SpillRoom`].
#[derive(Debug, Clone, PartialEq)]
struct SpillPlace {
    /// `DATAFUSION_RUNTIME_TEMP_DIRECTORY`; the system's temporary folder
    /// when `None`.
    directory: Option<PathBuf>,
    /// `DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE`, or DataFusion's
    /// default.
    cap: u64,
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
    runtime_from(runtime, config, std::env::vars())
}

fn runtime_from(
    mut runtime: RuntimeEnvBuilder,
    config: SessionConfig,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(RuntimeEnvBuilder, SessionConfig)> {
    let mut place = SpillPlace {
        directory: None,
        cap: DEFAULT_MAX_TEMP_DIRECTORY_SIZE,
    };
    let mut vars: Vec<(String, String)> = vars.filter(|(var, _)| var.starts_with("DATAFUSION_RUNTIME_")).collect();
    vars.sort();
    for (var, value) in vars {
        let key = format!(
            "datafusion.runtime.{}",
            var["DATAFUSION_RUNTIME_".len()..].to_lowercase()
        );
        let context = |e: datafusion::error::DataFusionError| e.context(format!("`{var}={value}` in the environment"));
        let capacity = || SessionContext::parse_capacity_limit(&key, &value).map_err(context);
        runtime = match &key["datafusion.runtime.".len()..] {
            "temp_directory" => {
                place.directory = Some(PathBuf::from(&value));
                runtime.with_temp_file_path(&value)
            }
            "max_temp_directory_size" => {
                place.cap = capacity()? as u64;
                runtime.with_max_temp_directory_size(place.cap)
            }
            "max_spill_merge_fan_in" => {
                let fan_in = value.parse::<usize>().map_err(|e| {
                    context(datafusion::error::DataFusionError::Configuration(format!(
                        "not a whole number: {e}"
                    )))
                })?;
                runtime.with_max_spill_merge_fan_in(fan_in)
            }
            "metadata_cache_limit" => runtime.with_metadata_cache_limit(capacity()?),
            "file_statistics_cache_limit" => runtime.with_file_statistics_cache_limit(capacity()?),
            "memory_limit" => {
                return Err(context(datafusion::error::DataFusionError::Configuration(
                    "etl sets the memory limit itself: use `--memory-limit` (or the target's `memory_limit:`), \
                     or ETL_DEFAULT_MEMORY_LIMIT for the machine's default"
                        .into(),
                )));
            }
            _ => {
                return Err(context(datafusion::error::DataFusionError::Configuration(
                    "not a runtime setting etl takes: temp_directory, max_temp_directory_size, \
                     max_spill_merge_fan_in, metadata_cache_limit and file_statistics_cache_limit are"
                        .into(),
                )));
            }
        };
    }
    Ok((runtime, config.with_extension(Arc::new(place))))
}

/// A build's watch over its spill files (see the module's comment).
#[derive(Debug)]
pub struct SpillRoom {
    disk: Arc<DiskManager>,
    /// The folder spill files go to.
    dir: PathBuf,
    cap: u64,
    warned: AtomicBool,
    warning: Mutex<Option<Diagnostic>>,
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
            cap: place.map_or(DEFAULT_MAX_TEMP_DIRECTORY_SIZE, |p| p.cap),
            warned: AtomicBool::new(false),
            warning: Mutex::new(None),
        });
        room.look();
        room
    }

    /// Looks every quarter of a second while `work` runs.
    pub async fn watch<F: std::future::Future>(self: &Arc<Self>, work: F) -> F::Output {
        let room = Arc::clone(self);
        let watcher = tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                every.tick().await;
                room.look();
            }
        });
        let output = work.await;
        watcher.abort();
        self.look();
        output
    }

    /// The warning given while the build ran, if any.
    pub fn warning(&self) -> Option<Diagnostic> {
        self.warning.lock().expect("spill warning poisoned").clone()
    }

    /// What a node whose spill failed should be told, if its error is a
    /// spill's: the limit, where, and what to change.
    pub fn explain(&self, message: &str) -> Option<(String, String)> {
        let limit = self.disk.max_temp_directory_size();
        let dir = self.dir.display();
        if message.contains("exceeded the allowable limit") {
            let why = if limit < self.cap {
                format!(
                    "spill files may take {} in {dir}: what that disk had free, less {} kept for the lake and \
                     the rest of the machine",
                    text(limit),
                    text(reserve_of(free_space(&self.dir).map_or(0, |(_, size)| size)))
                )
            } else {
                format!(
                    "spill files may take {} in {dir} (DATAFUSION_RUNTIME_MAX_TEMP_DIRECTORY_SIZE)",
                    text(limit)
                )
            };
            return Some((why, help()));
        }
        if message.contains("No space left on device") {
            return Some((format!("the disk is full (spill files go to {dir})"), help()));
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
        let limit = limit(self.cap, used, free, size);
        // Only fails on a disk manager that cannot spill: nothing to limit.
        let _ = self.disk.set_max_temp_directory_size(limit);
        if !should_warn(self.cap, limit, used) || self.warned.swap(true, Ordering::SeqCst) {
            return;
        }
        let message = format!(
            "spill files hold {} in {}: half of what that disk has room for ({} with {} kept free); a build \
             that spills twice as much fails",
            text(used),
            self.dir.display(),
            text(limit),
            text(reserve_of(size))
        );
        tracing::warn!("{message}");
        let diagnostic = Diagnostic::warning(Code::SpillSpace, message).with_help(help());
        *self.warning.lock().expect("spill warning poisoned") = Some(diagnostic);
    }
}

fn help() -> String {
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
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

#[cfg(not(unix))]
fn statvfs(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// `bytes` for a message: `2.0 GiB`, `512 MiB`, `300 KiB`.
fn text(bytes: u64) -> String {
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
        assert_eq!((place.directory.as_deref(), place.cap), (Some(dir.path()), 2 * GIB));
        // Without them: the system's folder, DataFusion's cap.
        let (disk, place) = runtime_of(&[]).unwrap();
        assert!(disk.temp_dir_paths().is_empty());
        assert_eq!((place.directory, place.cap), (None, DEFAULT_MAX_TEMP_DIRECTORY_SIZE));
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
            err.contains("`DATAFUSION_RUNTIME_SPILL_SPEED=fast`") && err.contains("not a runtime setting etl takes"),
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
