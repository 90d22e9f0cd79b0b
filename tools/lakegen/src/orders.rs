//! The orders created on one day, simulated to the end of their lives.
//!
//! An order created on day `d` writes rows on later days: a new version in
//! the orders feed at each status change, an event per change (sometimes
//! ingested days late, sometimes delivered twice). So the simulation of a
//! creation day decides *everything* about its orders at once, from the
//! stream of that day alone, and files each future row under the day it
//! lands on. Writing day `k` then means simulating days `k - WINDOW + 1 ..= k`
//! (cheap: no text is produced) and taking their rows that land on `k`.
//! Because every decision comes from the creation day's stream, the rows of
//! day `k` are the same whether the days before were written in this run or
//! in an earlier one.
//!
//! Lifecycle: created; then paid a few minutes later, or (3%) never paid and
//! cancelled within three days; a paid order is shipped 0.5-2 days later and
//! delivered 1-5 days after that, or (2%) cancelled before shipping.

use crate::calendar::{SECONDS_PER_DAY, day_of};
use crate::customers::{COUNTRIES, country_of};
use crate::rng::{Quota, Rng, Stream};
use crate::schedule::LOST_ORDER_IDS;
use crate::stats::Kind;
use crate::world::{HOUR_WEIGHTS, World};

/// Days, counting the creation day, on which an order can still write a row.
/// The longest path: paid 45 min after creation, shipped 2 days later,
/// delivered 5 days later (day +8), event ingested 3 days late (+11), then
/// re-delivered 2 days after that (+13).
pub const WINDOW: u32 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Created,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn event_type(self) -> &'static str {
        match self {
            Status::Created => "ORDER_CREATED",
            Status::Paid => "ORDER_PAID",
            Status::Shipped => "ORDER_SHIPPED",
            Status::Delivered => "ORDER_DELIVERED",
            Status::Cancelled => "ORDER_CANCELLED",
        }
    }
}

pub const CHANNELS: [&str; 3] = ["web", "mobile", "store"];
const CHANNEL_WEIGHTS: [u32; 3] = [55, 35, 10];

/// How a status or channel is spelled in one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    Plain,
    /// `PAID`
    Upper,
    /// `Paid`
    Title,
    /// ` paid `
    Padded,
}

/// How `order_ts` is spelled in one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsStyle {
    /// `2024-01-05T10:15:00Z`
    Utc,
    /// `2024-01-05 10:15:00`
    Naive,
    /// `2024-01-05T11:15:00+01:00`; the offset in minutes
    Offset(i32),
    /// `"1704449700"`
    Epoch,
}

const OFFSETS_MINUTES: [i32; 5] = [60, 120, -300, 330, -480];
const BAD_ORDER_TS: [&str; 3] = ["not a date", "2024-13-45T99:00:00Z", ""];
const BAD_CHANNELS: [&str; 3] = ["fax", "carrier pigeon", ""];

/// What makes an extra version a reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionDirt {
    BadOrderTs(&'static str),
    BadChannel(&'static str),
}

pub struct Order {
    pub id: u64,
    pub customer_id: u64,
    pub created: i64,
    pub channel: u8,
    pub country: u8,
    pub total_cents: u64,
}

/// One row of the orders feed.
pub struct Version {
    /// Index of the order in its batch.
    pub order: u32,
    pub status: Status,
    pub updated_at: i64,
    pub ts: TsStyle,
    pub status_spelling: Spelling,
    pub channel_spelling: Spelling,
    pub null_total: bool,
    /// Written twice, byte for byte.
    pub duplicated: bool,
    pub dirt: Option<VersionDirt>,
}

/// One row of the order_events feed.
pub struct Event {
    pub order: u32,
    /// Which status change of the order (0 = created); part of the event id.
    pub seq: u8,
    pub status: Status,
    pub event_ts: i64,
    pub ingested_at: i64,
    /// Position in the file; differs from `ingested_at` for out-of-order rows.
    pub sort_key: i64,
    pub late: bool,
    pub moved: bool,
    pub duplicate: bool,
}

/// One row of the order_items file.
pub struct Line {
    pub order_id: u64,
    pub line_no: u32,
    pub product_id: u64,
    pub quantity: i64,
    pub unit_price: Option<u64>,
    pub dirt: Option<Kind>,
}

/// Everything the orders created on one day will ever write.
pub struct Batch {
    pub day: u32,
    pub orders: Vec<Order>,
    pub lines: Vec<Line>,
    /// Versions by landing day, as an offset from `day`.
    pub versions: Vec<Vec<Version>>,
    /// Events by landing day, as an offset from `day`.
    pub events: Vec<Vec<Event>>,
}

impl Batch {
    fn offset_of(&self, world: &World, t: i64) -> usize {
        let offset = day_of(t) - (world.start_day + i64::from(self.day));
        assert!(
            (0..i64::from(WINDOW)).contains(&offset),
            "a row lands {offset} days after its order"
        );
        offset as usize
    }
}

fn spelling(rng: &mut Rng) -> Spelling {
    if rng.chance(0.06) {
        rng.pick(&[Spelling::Upper, Spelling::Title, Spelling::Padded])
    } else {
        Spelling::Plain
    }
}

/// Simulates the orders created on `day`.
pub fn simulate(world: &World, day: u32) -> Batch {
    let plan = *world.schedule.day(day);
    let mut sim = Simulation {
        world,
        rng: Rng::stream(world.seed, day, Stream::Orders),
        extra: world.extra_chance(),
        available: world.schedule.products_on(day),
        batch: Batch {
            day,
            orders: Vec::with_capacity(plan.orders as usize),
            lines: Vec::with_capacity(plan.orders as usize * 2),
            versions: (0..WINDOW).map(|_| Vec::new()).collect(),
            events: (0..WINDOW).map(|_| Vec::new()).collect(),
        },
    };
    let rng = &mut sim.rng;
    let day_start = world.day_start(day);
    let mut created: Vec<i64> = (0..plan.orders)
        .map(|_| day_start + rng.weighted(&HOUR_WEIGHTS) as i64 * 3600 + rng.below(3600) as i64)
        .collect();
    created.sort_unstable();

    // Which of the day's id slots stay lost (see `schedule`).
    let slots = plan.orders + LOST_ORDER_IDS;
    let mut lost = Vec::with_capacity(LOST_ORDER_IDS as usize);
    while (lost.len() as u64) < LOST_ORDER_IDS {
        let slot = rng.below(slots);
        if !lost.contains(&slot) {
            lost.push(slot);
        }
    }
    lost.sort_unstable();

    let mut orphans = 0;
    let mut next_slot = 0;
    let mut first_orders = Quota::new(plan.new_buyers, plan.orders);
    let mut next_new_customer = plan.first_customer_id;
    for (i, &t0) in created.iter().enumerate() {
        while lost.binary_search(&next_slot).is_ok() {
            next_slot += 1;
        }
        let id = plan.first_order_id + next_slot;
        next_slot += 1;

        // Exactly `new_buyers` of the day's orders are first orders.
        let customer_id = if first_orders.take(&mut sim.rng) {
            next_new_customer += 1;
            next_new_customer - 1
        } else {
            world.returning_customer(&mut sim.rng, day)
        };
        let country = if sim.rng.chance(0.95) {
            country_of(world.seed, customer_id)
        } else {
            sim.rng.below(COUNTRIES.len() as u64) as usize
        };
        let channel = sim.rng.weighted(&CHANNEL_WEIGHTS);
        let (total_cents, order_orphans) = sim.lines(id);
        orphans += order_orphans;
        sim.lifecycle(i as u32, t0);
        sim.batch.orders.push(Order {
            id,
            customer_id,
            created: t0,
            channel: channel as u8,
            country: country as u8,
            total_cents,
        });
    }
    let lost_ids: Vec<u64> = lost.iter().map(|s| plan.first_order_id + s).collect();
    sim.orphan_lines(&lost_ids, orphans);
    sim.batch.lines.sort_unstable_by_key(|l| (l.order_id, l.line_no));
    sim.batch
}

/// The state of one creation day's simulation.
struct Simulation<'w> {
    world: &'w World,
    rng: Rng,
    /// The chance of a reject extra after each clean row.
    extra: f64,
    /// Products on sale that day.
    available: u64,
    batch: Batch,
}

impl Simulation<'_> {
    /// Adds the lines of order `id` and the reject lines that ride along;
    /// returns the order's total and how many orphan lines it asked for.
    fn lines(&mut self, id: u64) -> (u64, u32) {
        let (rng, catalogue, lines) = (&mut self.rng, &self.world.catalogue, &mut self.batch.lines);
        let n_lines = 1 + rng.weighted(&[50, 28, 12, 6, 4]) as u32;
        let first_line = lines.len();
        let mut total_cents = 0;
        for line_no in 1..=n_lines {
            // An order rarely holds the same product twice.
            let mut product_id = catalogue.pick(rng, self.available);
            for _ in 0..3 {
                if !lines[first_line..].iter().any(|l| l.product_id == product_id) {
                    break;
                }
                product_id = catalogue.pick(rng, self.available);
            }
            let quantity = 1 + rng.weighted(&[70, 18, 8, 4]) as i64;
            let price = catalogue.price_cents(product_id);
            total_cents += quantity as u64 * price;
            lines.push(Line {
                order_id: id,
                line_no,
                product_id,
                quantity,
                unit_price: Some(price),
                dirt: None,
            });
        }
        let mut orphans = 0;
        let mut line_no = n_lines;
        for _ in 0..n_lines {
            if !rng.chance(self.extra) {
                continue;
            }
            let product_id = catalogue.pick(rng, self.available);
            let price = catalogue.price_cents(product_id);
            let (quantity, unit_price, dirt) = match rng.weighted(&[40, 30, 30]) {
                0 => (rng.range(-3, 0), Some(price), Kind::NonPositiveQuantity),
                1 => (rng.range(1, 3), None, Kind::MissingUnitPrice),
                _ => {
                    orphans += 1;
                    continue;
                }
            };
            line_no += 1;
            lines.push(Line {
                order_id: id,
                line_no,
                product_id,
                quantity,
                unit_price,
                dirt: Some(dirt),
            });
        }
        (total_cents, orphans)
    }

    /// Orphan lines point at ids that no order took.
    fn orphan_lines(&mut self, lost_ids: &[u64], count: u32) {
        let mut next_line = vec![0u32; lost_ids.len()];
        for _ in 0..count {
            let which = self.rng.below(lost_ids.len() as u64) as usize;
            next_line[which] += 1;
            let product_id = self.world.catalogue.pick(&mut self.rng, self.available);
            self.batch.lines.push(Line {
                order_id: lost_ids[which],
                line_no: next_line[which],
                product_id,
                quantity: self.rng.range(1, 3),
                unit_price: Some(self.world.catalogue.price_cents(product_id)),
                dirt: Some(Kind::OrphanOrderId),
            });
        }
    }

    /// Decides the order's status changes and files a version and an event
    /// for each.
    fn lifecycle(&mut self, order: u32, t0: i64) {
        let rng = &mut self.rng;
        let mut changes = [(Status::Created, t0); 4];
        let n;
        let fate = rng.unit();
        if fate < 0.03 {
            changes[1] = (Status::Cancelled, t0 + rng.range(2 * 3600, 72 * 3600));
            n = 2;
        } else {
            let lag = rng.range(30, 600) + if rng.chance(0.3) { rng.range(0, 2100) } else { 0 };
            let paid = t0 + lag;
            changes[1] = (Status::Paid, paid);
            if fate < 0.05 {
                changes[2] = (Status::Cancelled, paid + rng.range(3600, 20 * 3600));
                n = 3;
            } else {
                let shipped = paid + rng.range(SECONDS_PER_DAY / 2, 2 * SECONDS_PER_DAY);
                changes[2] = (Status::Shipped, shipped);
                changes[3] = (
                    Status::Delivered,
                    shipped + rng.range(SECONDS_PER_DAY, 5 * SECONDS_PER_DAY),
                );
                n = 4;
            }
        }
        for (seq, &(status, t)) in changes[..n].iter().enumerate() {
            self.version(order, status, t);
            self.event(order, seq as u8, status, t);
        }
    }

    /// The version of one status change, and its reject extras if any.
    fn version(&mut self, order: u32, status: Status, t: i64) {
        let rng = &mut self.rng;
        let ts = match rng.weighted(&[90, 4, 3, 3]) {
            0 => TsStyle::Utc,
            1 => TsStyle::Naive,
            2 => TsStyle::Offset(rng.pick(&OFFSETS_MINUTES)),
            _ => TsStyle::Epoch,
        };
        let version = Version {
            order,
            status,
            updated_at: t,
            ts,
            status_spelling: spelling(rng),
            channel_spelling: spelling(rng),
            null_total: rng.chance(0.03),
            duplicated: rng.chance(0.015),
            dirt: None,
        };
        let copies = 1 + u32::from(version.duplicated);
        let at = self.batch.offset_of(self.world, t);
        self.batch.versions[at].push(version);

        // One chance per row written keeps rejects at `dirt_rate` of all
        // rows. A reject lands minutes after the version it copies, in the
        // same day's file (unless it crosses midnight), so a lake's last
        // days are not short of rejects; copying an order's last version
        // makes it the latest one, and the models must reject before they
        // keep the latest version of each order.
        for _ in 0..copies {
            if !self.rng.chance(self.extra) {
                continue;
            }
            let rng = &mut self.rng;
            let updated_at = t + rng.range(1, 600);
            let dirt = if rng.chance(0.5) {
                VersionDirt::BadOrderTs(rng.pick(&BAD_ORDER_TS))
            } else {
                VersionDirt::BadChannel(rng.pick(&BAD_CHANNELS))
            };
            let at = self.batch.offset_of(self.world, updated_at);
            self.batch.versions[at].push(Version {
                order,
                status,
                updated_at,
                ts: TsStyle::Utc,
                status_spelling: Spelling::Plain,
                channel_spelling: Spelling::Plain,
                null_total: false,
                duplicated: false,
                dirt: Some(dirt),
            });
        }
    }

    /// The event of one status change, and its reject duplicate if any.
    fn event(&mut self, order: u32, seq: u8, status: Status, t: i64) {
        let rng = &mut self.rng;
        let late = rng.chance(0.02);
        let ingested_at = if late {
            t + rng.range(SECONDS_PER_DAY, 3 * SECONDS_PER_DAY)
        } else {
            t + rng.range(1, 90)
        };
        let moved = rng.chance(0.01);
        let sort_key = if moved {
            ingested_at - rng.range(300, 7200)
        } else {
            ingested_at
        };
        let at = self.batch.offset_of(self.world, ingested_at);
        let event = Event {
            order,
            seq,
            status,
            event_ts: t,
            ingested_at,
            sort_key,
            late,
            moved,
            duplicate: false,
        };
        self.batch.events[at].push(event);

        if !self.rng.chance(self.extra) {
            return;
        }
        // The producer sends the event again: in the same file a little
        // later, or re-delivered in a later file with a later ingested_at.
        let rng = &mut self.rng;
        let (ingested_at, sort_key) = if rng.chance(0.5) {
            (ingested_at, sort_key + rng.range(1, 3600))
        } else {
            let again = ingested_at + rng.range(SECONDS_PER_DAY, 2 * SECONDS_PER_DAY);
            (again, again)
        };
        let at = self.batch.offset_of(self.world, ingested_at);
        self.batch.events[at].push(Event {
            order,
            seq,
            status,
            event_ts: t,
            ingested_at,
            sort_key,
            late: false,
            moved: false,
            duplicate: true,
        });
    }
}
