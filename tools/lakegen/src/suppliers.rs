//! The suppliers the catalogue buys from: a list written once, on day 0,
//! each supplier a pure function of its id, and every product's supplier a
//! pure function of the product id.
//!
//! Dirt: an extra copy of a supplier row whose lead time is unusable
//! (`invalid_lead_time`, the real row is also there), exact duplicate rows,
//! lower-cased countries and names padded with spaces.

use crate::customers::COUNTRIES;
use crate::encode::{push_csv_field, push_u64};
use crate::rng::{Quota, Rng, Stream, Tag, hash};
use crate::stats::{Entity, Kind, Tally};
use crate::world::World;

pub const HEADER: &str = "supplier_id,name,country,lead_time_days\n";

#[rustfmt::skip]
const NAMES: &[&str] = &[
    "Nordwind", "Atelier Lumen", "Casa Verde", "Blue Harbour", "Kestrel", "Maison Orée", "Fjord", "Sol y Sombra",
    "Iron Oak", "Vitra Works", "Brightline", "Terra Nova", "Alpenglow", "Riverside", "Cobalt", "Silver Birch",
];

/// Where suppliers are based: ISO codes of `COUNTRIES`, most in Europe.
const SUPPLIER_COUNTRIES: &[&str] = &["FR", "FR", "DE", "DE", "IT", "ES", "NL", "GB", "PT", "PL", "US", "JP"];

/// Lead times that no system can use.
const INVALID_LEAD_TIMES: &[&str] = &["-3", "soon", "", "1.5.2"];

/// How many suppliers a lake has: one per 8 products of the initial
/// catalogue, between 12 and 400. A function of day 0 only, so that every
/// day agrees on it.
pub fn count(initial_products: u64) -> u64 {
    (initial_products / 8).clamp(12, 400)
}

/// The supplier of product `product_id`, in `1..=suppliers`.
pub fn of_product(seed: u64, suppliers: u64, product_id: u64) -> u64 {
    1 + hash(seed, Tag::ProductSupplier, product_id) % suppliers
}

fn legal_form(country: &str) -> &'static str {
    match country {
        "FR" => "SARL",
        "DE" => "GmbH",
        "IT" => "S.p.A.",
        "ES" => "S.L.",
        "NL" => "B.V.",
        "PL" => "Sp. z o.o.",
        "PT" => "Lda",
        "JP" => "K.K.",
        "US" => "Inc.",
        _ => "Ltd",
    }
}

/// Writes the suppliers file of `day`: every supplier on day 0, none after.
pub fn write_day(buf: &mut Vec<u8>, world: &World, day: u32, tally: &mut Tally) {
    buf.extend_from_slice(HEADER.as_bytes());
    if day != 0 {
        return;
    }
    let mut rng = Rng::stream(world.seed, day, Stream::Suppliers);
    let count = world.suppliers;
    let mut rejects = Quota::new((world.extra_chance() * count as f64).round() as u64, count);
    // Noise in fixed shares, so that even a small lake has some of each.
    let share = |p: f64| (p * count as f64).ceil() as u64;
    let mut padded = Quota::new(share(0.06), count);
    let mut lowercase = Quota::new(share(0.08), count);
    let mut duplicated = Quota::new(share(0.06), count);
    let mut row = Vec::with_capacity(96);
    for id in 1..=count {
        let h = hash(world.seed, Tag::Supplier, id);
        let country = SUPPLIER_COUNTRIES[(h % SUPPLIER_COUNTRIES.len() as u64) as usize];
        debug_assert!(COUNTRIES.iter().any(|c| c.code == country));
        let mut name = format!(
            "{} {}",
            NAMES[((h >> 8) % NAMES.len() as u64) as usize],
            legal_form(country)
        );
        // Distinct names: the id is part of the trade name beyond the list.
        if id > NAMES.len() as u64 {
            name = format!("{} {}", name, id);
        }
        let lead_time = 2 + (h >> 20) % 29;

        row.clear();
        push_u64(&mut row, id);
        row.push(b',');
        if padded.take(&mut rng) {
            push_csv_field(&mut row, &format!("  {name} "));
            tally.kind(Kind::SupplierNameWhitespace);
        } else {
            push_csv_field(&mut row, &name);
        }
        row.push(b',');
        if lowercase.take(&mut rng) {
            row.extend_from_slice(country.to_ascii_lowercase().as_bytes());
            tally.kind(Kind::SupplierCountryLowercase);
        } else {
            row.extend_from_slice(country.as_bytes());
        }
        row.push(b',');
        push_u64(&mut row, lead_time);
        row.push(b'\n');
        buf.extend_from_slice(&row);
        tally.row(Entity::Suppliers);

        if duplicated.take(&mut rng) {
            buf.extend_from_slice(&row);
            tally.row(Entity::Suppliers);
            tally.kind(Kind::DuplicateSupplier);
        }
        if rejects.take(&mut rng) {
            push_u64(buf, id);
            buf.push(b',');
            push_csv_field(buf, &name);
            buf.push(b',');
            buf.extend_from_slice(country.as_bytes());
            buf.push(b',');
            buf.extend_from_slice(rng.pick(INVALID_LEAD_TIMES).as_bytes());
            buf.push(b'\n');
            tally.row(Entity::Suppliers);
            tally.kind(Kind::InvalidLeadTime);
        }
    }
}
