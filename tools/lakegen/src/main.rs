//! `lakegen`: writes the reference project's bronze lake. Argument parsing
//! and a summary; the library does the work.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use lakegen::{Config, Date, Manifest};

/// Writes the reference e-commerce project's dirty bronze lake, reproducibly from a seed
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The lake root: one folder per entity and `_lakegen.json` go here
    #[arg(long)]
    out: PathBuf,
    /// Orders created over the first --days days (sets the daily base rate)
    #[arg(long, default_value_t = 20_000)]
    orders: u64,
    /// The daily base rate itself, e.g. copied from a `_lakegen.json` to
    /// regenerate a lake of a different length with the same days
    #[arg(long, conflicts_with = "orders")]
    orders_per_day: Option<f64>,
    /// Days to write, from --start on
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The first day, YYYY-MM-DD
    #[arg(long, default_value = "2024-01-01")]
    start: Date,
    /// Fraction of each entity's rows that carry reject dirt
    #[arg(long, default_value_t = 0.03)]
    dirt_rate: f64,
    /// Write only the next day of the lake at --out, as its `_lakegen.json` describes
    #[arg(long, conflicts_with_all = ["orders", "orders_per_day", "days", "seed", "start", "dirt_rate"])]
    append_day: bool,
    /// With --append-day: keep appending, the next day every interval
    /// (`5s`, `1m`), as feeds that land all day; stop with Ctrl-C
    #[arg(long, requires = "append_day", value_parser = humantime::parse_duration)]
    every: Option<std::time::Duration>,
    /// With --every: stop after this many days
    #[arg(long, requires = "every")]
    times: Option<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let manifest = if let Some(every) = args.every {
        let mut appended = 0;
        loop {
            let manifest = lakegen::append_day(&args.out)
                .with_context(|| format!("could not append a day to `{}`", args.out.display()))?;
            appended += 1;
            println!(
                "{}: appended {} ({} days)",
                args.out.display(),
                manifest.end,
                manifest.days
            );
            if args.times.is_some_and(|times| appended >= times) {
                break manifest;
            }
            std::thread::sleep(every);
        }
    } else if args.append_day {
        lakegen::append_day(&args.out).with_context(|| format!("could not append a day to `{}`", args.out.display()))?
    } else {
        let config = match args.orders_per_day {
            Some(orders_per_day) => Config {
                seed: args.seed,
                orders_per_day,
                start: args.start,
                dirt_rate: args.dirt_rate,
            },
            None => Config::for_total_orders(args.seed, args.orders, args.days, args.start, args.dirt_rate),
        };
        lakegen::generate(&config, args.days, &args.out)
            .with_context(|| format!("could not write the lake at `{}`", args.out.display()))?
    };
    print_summary(&args.out, &manifest);
    Ok(())
}

/// Prints what the lake now holds. A closed stdout (`| head`) is not an error.
fn print_summary(out: &std::path::Path, m: &Manifest) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}: {} days ({} .. {}), {} orders, seed {}, dirt rate {}",
        out.display(),
        m.days,
        m.config.start,
        m.end,
        m.stats.orders_created,
        m.config.seed,
        m.config.dirt_rate
    );
    for name in lakegen::ENTITIES {
        let e = &m.stats.entities[name];
        let share = if e.rows == 0 {
            0.0
        } else {
            100.0 * e.rejected() as f64 / e.rows as f64
        };
        println!(
            "  {name:<13} {:>10} rows  {:>8} rejects ({share:.2}%)",
            e.rows,
            e.rejected()
        );
    }
}
