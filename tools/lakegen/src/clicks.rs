//! The clickstream of one day: about three page views per order, from
//! returning customers or anonymous visitors, in time order.
//!
//! Clicks only come from customers who have ordered (or from nobody), never
//! from a signup who never orders, so a rejected customer row never leaves a
//! click pointing at a missing customer.

use crate::calendar::push_ts;
use crate::encode::push_u64;
use crate::rng::{Quota, Rng, Stream, Tag, hash};
use crate::stats::{Entity, Kind, Tally};
use crate::world::{HOUR_WEIGHTS, World};

/// Clicks per order created the same day. Real shops see far more; this
/// keeps the committed sample lake small while the shape stays.
pub const CLICKS_PER_ORDER: f64 = 3.0;

const SEARCH_TERMS: &[&str] = &[
    "shoes",
    "headphones",
    "lamp",
    "yoga+mat",
    "gift",
    "mug",
    "jacket",
    "sale",
    "kettle",
    "puzzle",
    "perfume",
    "sneakers",
    "charger",
    "rug",
    "socks",
];

/// Addresses that are not IPv4 dotted quads.
const INVALID_IPS: &[&str] = &["999.1.1.1", "abc", "10.0.0", "1.2.3.4.5", "", "256.300.1.7"];

/// Appends a public-looking IPv4 address made from the bits of `h`.
fn push_ip(buf: &mut Vec<u8>, h: u64) {
    // First octet in 1..=223 (unicast), skipping private 10/8 and loopback.
    let mut first = 1 + h % 223;
    if first == 10 || first == 127 {
        first += 1;
    }
    push_u64(buf, first);
    for shift in [8, 16, 24] {
        buf.push(b'.');
        push_u64(buf, (h >> shift) & 0xff);
    }
}

/// Writes the clicks file of `day`.
pub fn write_day(buf: &mut Vec<u8>, world: &World, day: u32, tally: &mut Tally) {
    let mut rng = Rng::stream(world.seed, day, Stream::Clicks);
    let orders = world.schedule.day(day).orders as f64;
    let count = (orders * CLICKS_PER_ORDER * (0.9 + 0.2 * rng.unit())).round() as u64;
    let day_start = world.day_start(day);
    let mut times: Vec<i64> = (0..count)
        .map(|_| day_start + rng.weighted(&HOUR_WEIGHTS) as i64 * 3600 + rng.below(3600) as i64)
        .collect();
    times.sort_unstable();
    let available = world.schedule.products_on(day);
    let mut rejects = Quota::new((world.dirt_rate * count as f64).round() as u64, count);

    for t in times {
        // A rejected row carries no noise, so an invalid ip always has a customer.
        let invalid_ip = rejects.take(&mut rng);
        let customer = (invalid_ip || !rng.chance(0.2)).then(|| world.returning_customer(&mut rng, day));

        buf.extend_from_slice(b"{\"customer_id\":");
        match customer {
            Some(id) => push_u64(buf, id),
            None => {
                buf.extend_from_slice(b"null");
                tally.kind(Kind::AnonymousVisitor);
            }
        }
        buf.extend_from_slice(b",\"page\":\"");
        match rng.weighted(&[20, 15, 45, 12, 8]) {
            0 => buf.push(b'/'),
            1 => {
                buf.extend_from_slice(b"/search?q=");
                buf.extend_from_slice(rng.pick(SEARCH_TERMS).as_bytes());
            }
            2 => {
                buf.extend_from_slice(b"/product/");
                push_u64(buf, world.catalogue.pick(&mut rng, available));
            }
            3 => buf.extend_from_slice(b"/cart"),
            _ => buf.extend_from_slice(b"/checkout"),
        }
        buf.extend_from_slice(b"\",\"ip\":\"");
        if invalid_ip {
            buf.extend_from_slice(rng.pick(INVALID_IPS).as_bytes());
            tally.kind(Kind::InvalidIp);
        } else {
            // Customers mostly browse from their usual address.
            let h = match customer {
                Some(id) if rng.chance(0.85) => hash(world.seed, Tag::CustomerIp, id),
                _ => rng.next_u64(),
            };
            push_ip(buf, h);
        }
        buf.extend_from_slice(b"\",\"ts\":\"");
        push_ts(buf, t);
        buf.extend_from_slice(b"\"}\n");
        tally.row(Entity::Clicks);
    }
}
