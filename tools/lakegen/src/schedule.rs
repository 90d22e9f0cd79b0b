//! How big each day is, and which ids it owns.
//!
//! A day's content must be computable without generating the days before it
//! (appending day 90 must not replay 90 days of orders), yet ids run on
//! across days. So each day's *volumes* (orders, signups, new products) come
//! from a tiny stream of their own, and the first id of day `d` is a prefix
//! sum over those volumes: O(d) arithmetic, no rows.
//!
//! Id layout:
//! - customers: the initial base (ids `1..=base`, buyers first), then each
//!   day's signups in a block: the day's new buyers (each places their first
//!   order that day) followed by signups who never order;
//! - orders: each day owns `orders + LOST_ORDER_IDS` consecutive ids; the
//!   lost ones never appear in an orders file and are what orphan item lines
//!   point at;
//! - products: the catalogue `1..=catalogue`, then each day's new products.
//!
//! Only `+ - * /` and comparisons are used on floats here and in every
//! decision: their results are exactly specified by IEEE 754, unlike `powf`,
//! `exp` or `ln`, whose last bit may differ between platforms or between a
//! debug and a release build.

use crate::Config;
use crate::calendar::weekday;
use crate::rng::{Rng, Stream};

/// Order ids of each day that no order ever takes (see the module docs).
pub const LOST_ORDER_IDS: u64 = 3;

/// Share of orders placed on a weekday, Monday first; weekends are busier.
const WEEKDAY_SHAPE: [f64; 7] = [0.92, 0.90, 0.93, 0.97, 1.04, 1.16, 1.08];

/// Linear growth of the order volume per day since the first day.
const GROWTH_PER_DAY: f64 = 0.002;

/// The expected volume of day `day` relative to the base rate.
fn shape(start_day: i64, day: u32) -> f64 {
    WEEKDAY_SHAPE[weekday(start_day + i64::from(day)) as usize] * (1.0 + GROWTH_PER_DAY * f64::from(day))
}

/// The base rate that makes `days` days starting at `start_day` hold about
/// `orders` orders in total, seasonality and growth included.
pub fn rate_for_total(orders: u64, days: u32, start_day: i64) -> f64 {
    let total_shape: f64 = (0..days).map(|d| shape(start_day, d)).sum();
    orders as f64 / total_shape
}

/// The volumes and first ids of one day.
#[derive(Clone, Copy, Debug, Default)]
pub struct DayPlan {
    /// Orders created that day.
    pub orders: u64,
    /// Customers who sign up that day and place their first order that day.
    pub new_buyers: u64,
    /// Customers who sign up that day and never order.
    pub non_buyers: u64,
    /// Products added to the catalogue that day (the whole catalogue on day 0).
    pub new_products: u64,
    pub first_order_id: u64,
    pub first_customer_id: u64,
    pub first_product_id: u64,
    /// Buyers (ordering customers) who signed up before this day, base included.
    pub buyers_before: u64,
}

/// The plans of days `0..=last`.
pub struct Schedule {
    pub base_buyers: u64,
    pub base_non_buyers: u64,
    days: Vec<DayPlan>,
}

impl Schedule {
    pub fn new(config: &Config, last: u32) -> Schedule {
        let rate = config.orders_per_day;
        let start_day = config.start.to_days();
        let base_buyers = ((rate * 8.0).round() as u64).max(50);
        let base_non_buyers = (base_buyers as f64 * 0.6).round() as u64;
        let catalogue = ((200.0 + rate * 0.3).round() as u64).min(5000);

        let mut days = Vec::with_capacity(last as usize + 1);
        let mut next = DayPlan {
            first_order_id: 1,
            first_customer_id: 1 + base_buyers + base_non_buyers,
            first_product_id: 1,
            buyers_before: base_buyers,
            ..DayPlan::default()
        };
        for day in 0..=last {
            let mut rng = Rng::stream(config.seed, day, Stream::Volume);
            let orders = (rate * shape(start_day, day) * (0.96 + 0.08 * rng.unit())).round() as u64;
            let new_buyers = ((orders as f64 * (0.33 + 0.04 * rng.unit())).round() as u64).min(orders);
            let non_buyers = (new_buyers as f64 * (0.5 + 0.2 * rng.unit())).round() as u64;
            let new_products = if day == 0 {
                catalogue
            } else if rng.chance(0.2) {
                1 + rng.below(4)
            } else {
                0
            };
            let plan = DayPlan {
                orders,
                new_buyers,
                non_buyers,
                new_products,
                ..next
            };
            days.push(plan);
            next = DayPlan {
                first_order_id: plan.first_order_id + orders + LOST_ORDER_IDS,
                first_customer_id: plan.first_customer_id + new_buyers + non_buyers,
                first_product_id: plan.first_product_id + new_products,
                buyers_before: plan.buyers_before + new_buyers,
                ..DayPlan::default()
            };
        }
        Schedule {
            base_buyers,
            base_non_buyers,
            days,
        }
    }

    pub fn day(&self, day: u32) -> &DayPlan {
        &self.days[day as usize]
    }

    /// Products that exist on `day` (ids `1..=n`).
    pub fn products_on(&self, day: u32) -> u64 {
        let plan = self.day(day);
        plan.first_product_id - 1 + plan.new_products
    }

    /// The customer id of the `index`-th buyer in signup order (base first).
    pub fn buyer(&self, index: u64) -> u64 {
        if index < self.base_buyers {
            return 1 + index;
        }
        // The last day whose first buyer index is <= index.
        let at = self.days.partition_point(|p| p.buyers_before <= index) - 1;
        let plan = &self.days[at];
        plan.first_customer_id + (index - plan.buyers_before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            seed: 9,
            orders_per_day: 100.0,
            start: "2024-01-01".parse().unwrap(),
            dirt_rate: 0.03,
        }
    }

    #[test]
    fn ids_are_contiguous_blocks() {
        let s = Schedule::new(&config(), 5);
        for d in 0..5 {
            let (a, b) = (s.day(d), s.day(d + 1));
            assert_eq!(b.first_order_id, a.first_order_id + a.orders + LOST_ORDER_IDS);
            assert_eq!(b.first_customer_id, a.first_customer_id + a.new_buyers + a.non_buyers);
            assert!(a.new_buyers <= a.orders);
        }
        assert_eq!(s.day(0).first_customer_id, 1 + s.base_buyers + s.base_non_buyers);
    }

    #[test]
    fn buyer_index_maps_to_buyer_ids_only() {
        let s = Schedule::new(&config(), 5);
        assert_eq!(s.buyer(0), 1);
        assert_eq!(s.buyer(s.base_buyers - 1), s.base_buyers);
        let d2 = s.day(2);
        assert_eq!(s.buyer(d2.buyers_before), d2.first_customer_id);
        assert_eq!(
            s.buyer(d2.buyers_before + d2.new_buyers - 1),
            d2.first_customer_id + d2.new_buyers - 1
        );
        assert_eq!(s.buyer(d2.buyers_before + d2.new_buyers), s.day(3).first_customer_id);
    }

    #[test]
    fn a_longer_schedule_agrees_on_the_shared_days() {
        let short = Schedule::new(&config(), 3);
        let long = Schedule::new(&config(), 30);
        for d in 0..=3 {
            assert_eq!(format!("{:?}", short.day(d)), format!("{:?}", long.day(d)));
        }
    }

    #[test]
    fn the_rate_for_a_total_hits_the_total() {
        let c = config();
        let rate = rate_for_total(20_000, 30, c.start.to_days());
        let c = Config {
            orders_per_day: rate,
            ..c
        };
        let s = Schedule::new(&c, 29);
        let total: u64 = (0..30).map(|d| s.day(d).orders).sum();
        assert!((19_700..=20_300).contains(&total), "{total}");
    }
}
