//! The facts every entity writer consults and none changes: the config, the
//! day plans, the catalogue and the name tables.
//!
//! A world is built for days `0..=last`; because each part only ever extends
//! (plans are prefix sums, the catalogue is indexed by id), the world built
//! for a longer lake agrees with a shorter one on every shared day. That is
//! what lets `append_day` build a world for one more day and write exactly
//! what a longer run would have written.

use crate::Config;
use crate::calendar::SECONDS_PER_DAY;
use crate::customers::Names;
use crate::products::Catalogue;
use crate::rng::{Rng, Tag, hash};
use crate::schedule::Schedule;

pub struct World {
    pub seed: u64,
    pub dirt_rate: f64,
    /// The first day of the lake, in days since the epoch.
    pub start_day: i64,
    pub schedule: Schedule,
    pub catalogue: Catalogue,
    /// Suppliers (ids `1..=suppliers`), all listed on day 0.
    pub suppliers: u64,
    pub names: Names,
}

impl World {
    pub fn new(config: &Config, last: u32) -> World {
        let schedule = Schedule::new(config, last);
        let catalogue = Catalogue::new(config.seed, schedule.products_on(last));
        let suppliers = crate::suppliers::count(schedule.products_on(0));
        World {
            suppliers,
            seed: config.seed,
            dirt_rate: config.dirt_rate,
            start_day: config.start.to_days(),
            schedule,
            catalogue,
            names: Names::new(),
        }
    }

    /// The instant day `day` of the lake starts (00:00:00 UTC).
    pub fn day_start(&self, day: u32) -> i64 {
        (self.start_day + i64::from(day)) * SECONDS_PER_DAY
    }

    /// The chance of adding a dirty *extra* row after each clean row, such
    /// that dirty rows make up `dirt_rate` of all rows written.
    pub fn extra_chance(&self) -> f64 {
        self.dirt_rate / (1.0 - self.dirt_rate)
    }

    /// A customer who has ordered before `day`: 30% of picks favour those
    /// who signed up in the last 30 days (so monthly cohorts keep ordering),
    /// and loyal customers (12% of buyers) are five times as likely to be
    /// picked as the others.
    pub fn returning_customer(&self, rng: &mut Rng, day: u32) -> u64 {
        let all = self.schedule.day(day).buyers_before;
        let recent_from = self.schedule.day(day.saturating_sub(30)).buyers_before;
        let mut candidate = 0;
        for _ in 0..16 {
            let index = if recent_from < all && rng.chance(0.3) {
                recent_from + rng.below(all - recent_from)
            } else {
                rng.below(all)
            };
            candidate = self.schedule.buyer(index);
            let loyal = hash(self.seed, Tag::CustomerLoyalty, candidate) % 100 < 12;
            if loyal || rng.chance(0.2) {
                break;
            }
        }
        candidate
    }
}

/// Orders and clicks per hour of the day (UTC), midnight first: quiet nights,
/// a lunch bump and an evening peak.
pub const HOUR_WEIGHTS: [u32; 24] = [
    3, 2, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 11, 10, 8, 8, 8, 9, 11, 13, 14, 12, 8, 5,
];
