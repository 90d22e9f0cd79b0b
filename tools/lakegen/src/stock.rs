//! The warehouse's stock snapshot of each day: units on hand per product
//! of the catalogue as it stands that day, taken at the end of the day.
//!
//! A product's stock follows a restocking cycle that is a pure function of
//! its id: full after each delivery, then sold down to zero on the cycle's
//! last day. Dirt: a product's snapshot replaced by a negative count
//! (`negative_on_hand`), an extra row for a product the catalogue does not
//! have (`unknown_product`), rows sent twice (`duplicate_snapshot`) and
//! dates spelled dd/mm/yyyy (`snapshot_date_dd_mm_yyyy`).

use crate::calendar::{DateStyle, push_date_styled};
use crate::encode::{push_i64, push_u64};
use crate::rng::{Quota, Rng, Stream, Tag, hash};
use crate::stats::{Entity, Kind, Tally};
use crate::world::World;

pub const HEADER: &str = "snapshot_date,product_id,on_hand\n";

/// Ids of products that never exist: far above any catalogue (at most a few
/// thousand products plus a few a day).
const UNKNOWN_PRODUCT_BASE: u64 = 900_000_000;

/// Units of `product_id` on hand at the end of `day` (days since the lake's
/// first day).
pub fn on_hand(seed: u64, product_id: u64, day: u32) -> u64 {
    let h = hash(seed, Tag::StockLevel, product_id);
    let capacity = 10 + h % 190;
    let cycle = 4 + (h >> 16) % 21;
    let position = (u64::from(day) + (h >> 32) % cycle) % cycle;
    capacity * (cycle - 1 - position) / (cycle - 1)
}

/// Writes the stock file of `day`, one row per product then on the catalogue.
pub fn write_day(buf: &mut Vec<u8>, world: &World, day: u32, tally: &mut Tally) {
    buf.extend_from_slice(HEADER.as_bytes());
    let mut rng = Rng::stream(world.seed, day, Stream::Stock);
    let products = world.schedule.products_on(day);
    let date = world.start_day + i64::from(day);
    let half = world.dirt_rate / 2.0;
    let mut negatives = Quota::new((half * products as f64).round() as u64, products);
    let extra = world.extra_chance() / 2.0;
    let mut unknown = Quota::new((extra * products as f64).round() as u64, products);
    let mut row = Vec::with_capacity(40);
    for id in 1..=products {
        let negative = negatives.take(&mut rng);
        row.clear();
        if !negative && rng.chance(0.05) {
            push_date_styled(&mut row, date, DateStyle::DayMonthYear);
            tally.kind(Kind::SnapshotDateDayMonthYear);
        } else {
            push_date_styled(&mut row, date, DateStyle::Iso);
        }
        row.push(b',');
        push_u64(&mut row, id);
        row.push(b',');
        if negative {
            push_i64(&mut row, -(rng.range(1, 40)));
            tally.kind(Kind::NegativeOnHand);
        } else {
            push_u64(&mut row, on_hand(world.seed, id, day));
        }
        row.push(b'\n');
        buf.extend_from_slice(&row);
        tally.row(Entity::Stock);
        if !negative && rng.chance(0.01) {
            buf.extend_from_slice(&row);
            tally.row(Entity::Stock);
            tally.kind(Kind::DuplicateSnapshot);
        }
        if unknown.take(&mut rng) {
            push_date_styled(buf, date, DateStyle::Iso);
            buf.push(b',');
            push_u64(buf, UNKNOWN_PRODUCT_BASE + rng.below(1_000_000));
            buf.push(b',');
            push_u64(buf, rng.below(200));
            buf.push(b'\n');
            tally.row(Entity::Stock);
            tally.kind(Kind::UnknownProduct);
        }
    }
}
