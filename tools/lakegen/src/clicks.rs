//! The clickstream of one day: about three page views per order, in
//! visits (sessions) of one to seven pages a few seconds to minutes apart,
//! from returning customers or anonymous visitors, on the website or the
//! app, written in time order.
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

/// Pages a visit views: 1 to 7, about 2.6 on average.
const VISIT_PAGES: [u32; 7] = [30, 25, 18, 12, 8, 4, 3];

/// One page view before it is written.
struct View {
    t: i64,
    customer: Option<u64>,
    /// 0 home, 1 search, 2 product, 3 cart, 4 checkout.
    page: usize,
    /// The search term or product the page shows.
    detail: u64,
    mobile: bool,
    /// The bits of the visit's address.
    ip: u64,
}

/// Writes the clicks file of `day`.
pub fn write_day(buf: &mut Vec<u8>, world: &World, day: u32, tally: &mut Tally) {
    let mut rng = Rng::stream(world.seed, day, Stream::Clicks);
    let orders = world.schedule.day(day).orders as f64;
    let count = (orders * CLICKS_PER_ORDER * (0.9 + 0.2 * rng.unit())).round() as u64;
    let day_start = world.day_start(day);
    let day_end = day_start + 86_400;
    let available = world.schedule.products_on(day);

    let mut views: Vec<View> = Vec::with_capacity(count as usize);
    while (views.len() as u64) < count {
        let mut t = day_start + rng.weighted(&HOUR_WEIGHTS) as i64 * 3600 + rng.below(3600) as i64;
        let customer = (!rng.chance(0.2)).then(|| world.returning_customer(&mut rng, day));
        // The app or the website: a visitor keeps to one on a given day.
        let who = customer.unwrap_or_else(|| rng.next_u64());
        let mobile = hash(world.seed, Tag::ClickChannel, who ^ (u64::from(day) << 40)) % 100 < 42;
        // Customers mostly browse from their usual address.
        let ip = match customer {
            Some(id) if rng.chance(0.85) => hash(world.seed, Tag::CustomerIp, id),
            _ => rng.next_u64(),
        };
        let pages = 1 + rng.weighted(&VISIT_PAGES) as u64;
        for n in 0..pages.min(count - views.len() as u64) {
            if t >= day_end {
                break;
            }
            // A visit lands on the home page, a search or a product, then
            // browses products and goes on to the cart and the checkout.
            let page = if n == 0 {
                rng.weighted(&[35, 25, 40, 0, 0])
            } else {
                rng.weighted(&[5, 15, 50, 18, 12])
            };
            let detail = match page {
                1 => rng.below(SEARCH_TERMS.len() as u64),
                2 => world.catalogue.pick(&mut rng, available),
                _ => 0,
            };
            views.push(View {
                t,
                customer,
                page,
                detail,
                mobile,
                ip,
            });
            t += rng.range(5, 300);
        }
    }
    views.sort_by_key(|v| v.t);

    // A rejected row carries no noise, so an invalid ip always has a customer.
    let identified = views.iter().filter(|v| v.customer.is_some()).count() as u64;
    let mut rejects = Quota::new((world.dirt_rate * count as f64).round() as u64, identified);
    for v in views {
        let invalid_ip = v.customer.is_some() && rejects.take(&mut rng);
        buf.extend_from_slice(b"{\"customer_id\":");
        match v.customer {
            Some(id) => push_u64(buf, id),
            None => {
                buf.extend_from_slice(b"null");
                tally.kind(Kind::AnonymousVisitor);
            }
        }
        buf.extend_from_slice(b",\"page\":\"");
        match v.page {
            0 => buf.push(b'/'),
            1 => {
                buf.extend_from_slice(b"/search?q=");
                buf.extend_from_slice(SEARCH_TERMS[v.detail as usize].as_bytes());
            }
            2 => {
                buf.extend_from_slice(b"/product/");
                push_u64(buf, v.detail);
            }
            3 => buf.extend_from_slice(b"/cart"),
            _ => buf.extend_from_slice(b"/checkout"),
        }
        buf.extend_from_slice(if v.mobile {
            b"\",\"channel\":\"mobile"
        } else {
            b"\",\"channel\":\"web"
        });
        buf.extend_from_slice(b"\",\"ip\":\"");
        if invalid_ip {
            buf.extend_from_slice(rng.pick(INVALID_IPS).as_bytes());
            tally.kind(Kind::InvalidIp);
        } else {
            push_ip(buf, v.ip);
        }
        buf.extend_from_slice(b"\",\"ts\":\"");
        push_ts(buf, v.t);
        buf.extend_from_slice(b"\"}\n");
        tally.row(Entity::Clicks);
    }
}
