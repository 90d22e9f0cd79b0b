//! The bronze-lake generator: writes the reference e-commerce project's raw
//! files, deliberately dirty, reproducibly from a seed.
//!
//! A lake is a folder with one gzip file per day and entity
//! (`orders/2024-01-05.jsonl.gz`, `customers/2024-01-05.csv.gz`, ...) and a
//! `_lakegen.json` manifest holding the config and the exact number of rows
//! written per entity and per kind of dirt ([`Stats`]).
//!
//! Every day's content is a pure function of ([`Config`], day index): each
//! (day, entity) has its own random stream, ids are allocated from per-day
//! volumes that are cheap to recompute, and the rows an order writes on
//! later days are re-simulated from its creation day. So [`append_day`]
//! writes exactly the bytes a longer [`generate`] would have written for
//! that day.
//!
//! The pipeline of one day: `schedule` (volumes and id blocks) -> `orders`
//! (simulate the orders created on the last `WINDOW` days) -> `feeds`,
//! `customers`, `products`, `clicks`, `suppliers`, `stock` (render the day's rows, counting them
//! in a `Tally`) -> gzip files.

mod calendar;
mod clicks;
mod customers;
mod encode;
mod feeds;
mod orders;
mod products;
mod rng;
mod schedule;
mod stats;
mod stock;
mod suppliers;
mod world;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

pub use calendar::Date;
pub use customers::{COUNTRIES, Country};
pub use stats::{EntityStats, Stats};

use orders::{Batch, WINDOW};
use stats::{Entity, Tally};
use world::World;

/// The manifest's file name, at the root of the lake.
pub const MANIFEST_FILE: &str = "_lakegen.json";

/// The generator version recorded in the manifest. Appending to a lake
/// written by another version is refused: its days would not match.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The folders a lake holds, one per entity.
pub const ENTITIES: [&str; 8] = [
    "customers",
    "products",
    "orders",
    "order_items",
    "order_events",
    "clicks",
    "suppliers",
    "stock",
];

/// Level 6 is zlib's default: files about 6.5x smaller than their text, at
/// a speed (with zlib-rs) that writes a million orders in well under a minute.
const GZIP_LEVEL: u32 = 6;

/// What the lake is a function of. The number of days is not part of it:
/// day `d` is the same in a lake of any length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub seed: u64,
    /// The base daily order volume; each day scales it by weekday
    /// seasonality and slow growth.
    pub orders_per_day: f64,
    /// The first day of the lake.
    #[serde(with = "date_text")]
    pub start: Date,
    /// The fraction of each entity's rows that carry reject dirt.
    pub dirt_rate: f64,
}

impl Config {
    /// The config whose first `days` days hold about `orders` orders.
    pub fn for_total_orders(seed: u64, orders: u64, days: u32, start: Date, dirt_rate: f64) -> Config {
        let orders_per_day = schedule::rate_for_total(orders, days, start.to_days());
        Config {
            seed,
            orders_per_day,
            start,
            dirt_rate,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if !(self.orders_per_day.is_finite() && self.orders_per_day >= 1.0 && self.orders_per_day <= 1e7) {
            return Err(Error::Config(format!(
                "orders per day must be within 1..=10000000, got {}",
                self.orders_per_day
            )));
        }
        // Customers' rejects go to signups who never order, about a third of
        // the customer rows, and extras need rate / (1 - rate) <= 1.
        if !(0.0..=0.3).contains(&self.dirt_rate) {
            return Err(Error::Config(format!(
                "the dirt rate must be within 0..=0.3, got {}",
                self.dirt_rate
            )));
        }
        if !(1972..=9000).contains(&self.start.year) {
            return Err(Error::Config(format!(
                "the start date `{}` is out of range",
                self.start
            )));
        }
        Ok(())
    }
}

/// `_lakegen.json`: the config, how many days exist, and what they hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub version: String,
    pub config: Config,
    /// Days written, from the start date on; the next appended day has this index.
    pub days: u32,
    /// The last day written.
    #[serde(with = "date_text")]
    pub end: Date,
    #[serde(flatten)]
    pub stats: Stats,
}

#[derive(Debug)]
pub enum Error {
    Config(String),
    Io { path: PathBuf, source: io::Error },
    Manifest { path: PathBuf, source: serde_json::Error },
    Version { path: PathBuf, found: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(message) => write!(f, "{message}"),
            Error::Io { path, .. } => write!(f, "cannot access `{}`", path.display()),
            Error::Manifest { path, .. } => write!(f, "`{}` is not a lakegen manifest", path.display()),
            Error::Version { path, found } => write!(
                f,
                "`{}` was written by lakegen {found}; lakegen {VERSION} would not append a matching day",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Manifest { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Writes days `0..days` of the lake into `out` (created if missing;
/// existing files of those days are overwritten) and its manifest.
pub fn generate(config: &Config, days: u32, out: &Path) -> Result<Manifest, Error> {
    config.validate()?;
    if days == 0 {
        return Err(Error::Config("a lake has at least one day".into()));
    }
    let mut writer = DayWriter::new(config, days - 1, out)?;
    for day in 0..days {
        writer.write_day(day)?;
    }
    let manifest = Manifest {
        generator: "lakegen".into(),
        version: VERSION.into(),
        config: config.clone(),
        days,
        end: Date::from_days(config.start.to_days() + i64::from(days) - 1),
        stats: writer.tally.to_stats(),
    };
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Writes the next day of the lake in `out`, as described by its manifest,
/// and updates the manifest. Returns the updated manifest.
pub fn append_day(out: &Path) -> Result<Manifest, Error> {
    let mut manifest = read_manifest(out)?;
    if manifest.version != VERSION {
        return Err(Error::Version {
            path: out.join(MANIFEST_FILE),
            found: manifest.version,
        });
    }
    manifest.config.validate()?;
    let day = manifest.days;
    let mut writer = DayWriter::new(&manifest.config, day, out)?;
    writer.write_day(day)?;
    manifest.stats.add(&writer.tally.to_stats());
    manifest.days += 1;
    manifest.end = Date::from_days(manifest.config.start.to_days() + i64::from(day));
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Reads the manifest of the lake at `out`.
pub fn read_manifest(out: &Path) -> Result<Manifest, Error> {
    let path = out.join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Manifest { path, source })
}

fn write_manifest(out: &Path, manifest: &Manifest) -> Result<(), Error> {
    let path = out.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(manifest).expect("a manifest always serialises");
    text.push('\n');
    // Written aside and renamed, so an interrupted append leaves the old manifest.
    let tmp = out.join(format!("{MANIFEST_FILE}.tmp"));
    fs::write(&tmp, text).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
}

/// Writes whole days, keeping the simulated orders of the last `WINDOW`
/// days between one day and the next.
struct DayWriter<'a> {
    world: World,
    out: &'a Path,
    /// Batches of consecutive creation days, oldest first.
    window: Vec<Batch>,
    buf: Vec<u8>,
    tally: Tally,
}

impl<'a> DayWriter<'a> {
    /// A writer for days up to `last`.
    fn new(config: &Config, last: u32, out: &'a Path) -> Result<DayWriter<'a>, Error> {
        for entity in Entity::ALL {
            let dir = out.join(entity.name());
            fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
        }
        Ok(DayWriter {
            world: World::new(config, last),
            out,
            window: Vec::new(),
            buf: Vec::with_capacity(1 << 20),
            tally: Tally::default(),
        })
    }

    fn write_day(&mut self, day: u32) -> Result<(), Error> {
        // Simulate the creation days whose orders can write on `day`; in a
        // single run that is just `day`, when appending the whole window.
        self.window.retain(|b| day - b.day < WINDOW);
        let from = self.window.last().map_or(day.saturating_sub(WINDOW - 1), |b| b.day + 1);
        for d in from..=day {
            self.window.push(orders::simulate(&self.world, d));
        }
        let today = self.window.last().expect("the window holds today");
        self.tally.orders_created += today.orders.len() as u64;

        let date = Date::from_days(self.world.start_day + i64::from(day));
        let (world, tally) = (&self.world, &mut self.tally);
        let plan = world.schedule.day(day);
        for entity in Entity::ALL {
            self.buf.clear();
            let buf = &mut self.buf;
            match entity {
                Entity::Customers => customers::write_day(buf, world, day, tally),
                Entity::Products => world.catalogue.write(
                    buf,
                    world.seed,
                    world.suppliers,
                    plan.first_product_id,
                    plan.new_products,
                    tally,
                ),
                Entity::Orders => feeds::write_orders(buf, &self.window, day, tally),
                Entity::OrderItems => feeds::write_items(buf, today, tally),
                Entity::OrderEvents => feeds::write_events(buf, world.seed, &self.window, day, tally),
                Entity::Clicks => clicks::write_day(buf, world, day, tally),
                Entity::Suppliers => suppliers::write_day(buf, world, day, tally),
                Entity::Stock => stock::write_day(buf, world, day, tally),
            }
            let path = self
                .out
                .join(entity.name())
                .join(format!("{date}.{}", entity.extension()));
            write_gz(&path, &self.buf)?;
        }
        Ok(())
    }
}

fn write_gz(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    // Written beside, then renamed: a reader listing the folder meanwhile
    // (`etl build --watch`) sees the whole file or none of it; the `.tmp`
    // name matches no `*.csv.gz` glob.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // The gzip header holds no name and no mtime (flate2's default), so the
    // bytes depend on the content only.
    let mut gz = GzEncoder::new(File::create(&tmp).map_err(io)?, Compression::new(GZIP_LEVEL));
    gz.write_all(bytes).map_err(io)?;
    gz.finish().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Dates as `YYYY-MM-DD` strings in the manifest.
mod date_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::Date;

    pub fn serialize<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(date)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
