//! The product catalogue: names, categories, prices and popularity, each a
//! pure function of the product id, and the daily products file.
//!
//! Day 0's file holds the whole initial catalogue; later days occasionally
//! add a few products. Popularity is a long tail: a product's weight is
//! `x^-0.75` for a per-product uniform `x`, which orders products like a
//! Zipf law of exponent 0.75 over their popularity rank. Orders and clicks
//! draw from a cumulative table over every product id; since ids only grow,
//! the first `n` entries are exactly the table of the catalogue as it was
//! when it had `n` products.

use crate::encode::{push_csv_field, push_money, push_u64};
use crate::rng::{Rng, Tag, hash, unit};
use crate::stats::{Entity, Tally};

struct Category {
    name: &'static str,
    nouns: &'static [&'static str],
    /// Price range in whole euros.
    min: u64,
    max: u64,
}

// One line per category reads better than rustfmt's one noun per line.
#[rustfmt::skip]
const CATEGORIES: [Category; 10] = [
    Category { name: "Electronics", min: 9, max: 399, nouns: &["Headphones", "Charger", "Speaker", "Keyboard", "Mouse", "Webcam", "Smartwatch", "USB Hub", "Power Bank"] },
    Category { name: "Books", min: 5, max: 45, nouns: &["Novel", "Cookbook", "Travel Guide", "Comic", "Biography", "Atlas", "Poetry Collection"] },
    Category { name: "Clothing", min: 8, max: 149, nouns: &["T-Shirt", "Hoodie", "Jeans", "Jacket", "Scarf", "Dress", "Sweater", "Socks", "Cap"] },
    Category { name: "Shoes", min: 19, max: 179, nouns: &["Sneakers", "Boots", "Sandals", "Running Shoes", "Loafers", "Slippers"] },
    Category { name: "Home", min: 7, max: 249, nouns: &["Lamp", "Cushion", "Blanket", "Vase", "Mirror", "Rug", "Curtains", "Candle", "Poster"] },
    Category { name: "Kitchen", min: 5, max: 199, nouns: &["Mug", "Frying Pan", "Knife Set", "Kettle", "Teapot", "Cutting Board", "Blender", "Espresso Cups"] },
    Category { name: "Beauty", min: 3, max: 89, nouns: &["Shampoo", "Face Cream", "Perfume", "Lip Balm", "Soap", "Serum", "Hand Cream"] },
    Category { name: "Sports", min: 7, max: 219, nouns: &["Yoga Mat", "Dumbbells", "Water Bottle", "Tennis Racket", "Football", "Bike Helmet", "Jump Rope"] },
    Category { name: "Toys", min: 6, max: 89, nouns: &["Puzzle", "Board Game", "Plush Bear", "Building Blocks", "Kite", "Toy Car", "Doll House"] },
    Category { name: "Garden", min: 4, max: 129, nouns: &["Watering Can", "Plant Pot", "Seed Box", "Garden Hose", "Pruning Shears", "Bird Feeder"] },
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Premium",
    "Eco",
    "Compact",
    "Deluxe",
    "Vintage",
    "Urban",
    "Essential",
    "Pro",
    "Mini",
    "Soft",
    "Bold",
    "Nordic",
    "Alpine",
    "Coastal",
    "Smart",
    "Organic",
    "Handmade",
    "Travel",
    "Family",
];

/// Edition names, written in quotes inside the product name.
const EDITIONS: &[&str] = &["Paris", "Berlin", "Limited", "Summer", "Midnight", "Heritage"];

/// Facts of one product that orders need, cached for the whole run.
#[derive(Clone, Copy)]
struct Product {
    price_cents: u64,
    cost_cents: u64,
    category: u8,
}

fn product(seed: u64, id: u64) -> Product {
    let h = hash(seed, Tag::Product, id);
    let category = (h % CATEGORIES.len() as u64) as u8;
    let c = &CATEGORIES[category as usize];
    // u^2 skews prices towards the cheap end of the category's range.
    let u = unit(h.rotate_left(17));
    let euros = c.min + ((c.max - c.min) as f64 * u * u) as u64;
    let mut price_cents = euros * 100 + 99;
    if multipack(h).is_some() {
        price_cents = price_cents * 2 - 100;
    }
    let margin = 0.35 + 0.4 * unit(h.rotate_left(41));
    let cost_cents = ((price_cents as f64 * margin) as u64).clamp(1, price_cents - 1);
    Product {
        price_cents,
        cost_cents,
        category,
    }
}

/// Some products are sold in packs (`, pack of 3`), which puts a comma in the name.
fn multipack(h: u64) -> Option<u64> {
    ((h >> 24) % 100 < 8).then_some(2 + (h >> 32) % 4)
}

/// The catalogue of every product id up to the last day generated.
pub struct Catalogue {
    products: Vec<Product>,
    /// Running sums of popularity weights, by id - 1.
    cumulative: Vec<f64>,
}

impl Catalogue {
    pub fn new(seed: u64, products: u64) -> Catalogue {
        let mut sum = 0.0;
        let mut cumulative = Vec::with_capacity(products as usize);
        for id in 1..=products {
            let x = unit(hash(seed, Tag::ProductPopularity, id)) + 0.002;
            sum += 1.0 / (x * x.sqrt()).sqrt();
            cumulative.push(sum);
        }
        Catalogue {
            products: (1..=products).map(|id| product(seed, id)).collect(),
            cumulative,
        }
    }

    pub fn price_cents(&self, id: u64) -> u64 {
        self.products[id as usize - 1].price_cents
    }

    /// A product id in `1..=available`, by popularity.
    pub fn pick(&self, rng: &mut Rng, available: u64) -> u64 {
        let table = &self.cumulative[..available as usize];
        let x = rng.unit() * table[table.len() - 1];
        (table.partition_point(|&c| c <= x) as u64).min(available - 1) + 1
    }

    /// Writes the rows of products `first..first + count` (a day's additions).
    /// Each row names the product's supplier, one of `1..=suppliers`.
    pub fn write(&self, buf: &mut Vec<u8>, seed: u64, suppliers: u64, first: u64, count: u64, tally: &mut Tally) {
        buf.extend_from_slice(HEADER.as_bytes());
        let mut name = String::with_capacity(64);
        for id in first..first + count {
            let p = self.products[id as usize - 1];
            let h = hash(seed, Tag::Product, id);
            let category = &CATEGORIES[p.category as usize];
            name.clear();
            name.push_str(ADJECTIVES[((h >> 8) % ADJECTIVES.len() as u64) as usize]);
            name.push(' ');
            name.push_str(category.nouns[((h >> 16) % category.nouns.len() as u64) as usize]);
            if let Some(pack) = multipack(h) {
                name.push_str(", pack of ");
                name.push(char::from(b'0' + pack as u8));
            } else if (h >> 24) % 100 < 12 {
                name.push_str(" \"");
                name.push_str(EDITIONS[((h >> 36) % EDITIONS.len() as u64) as usize]);
                name.push('"');
            }
            push_u64(buf, id);
            buf.push(b',');
            push_csv_field(buf, &name);
            buf.push(b',');
            buf.extend_from_slice(category.name.as_bytes());
            buf.push(b',');
            push_money(buf, p.price_cents);
            buf.push(b',');
            push_money(buf, p.cost_cents);
            buf.push(b',');
            push_u64(buf, crate::suppliers::of_product(seed, suppliers, id));
            buf.push(b'\n');
            tally.row(Entity::Products);
        }
    }
}

pub const HEADER: &str = "product_id,name,category,unit_price,cost,supplier_id\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn cost_is_below_price_for_every_product() {
        let catalogue = Catalogue::new(5, 5000);
        for p in &catalogue.products {
            assert!(0 < p.cost_cents && p.cost_cents < p.price_cents);
        }
    }

    #[test]
    fn popularity_has_a_long_tail() {
        let catalogue = Catalogue::new(5, 500);
        let mut rng = Rng::stream(5, 0, Stream::Orders);
        let mut hits = vec![0u32; 501];
        for _ in 0..100_000 {
            hits[catalogue.pick(&mut rng, 500) as usize] += 1;
        }
        hits.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = hits[..10].iter().sum();
        assert!(
            top10 > 10_000,
            "the 10 most popular of 500 products should take >10% of picks, got {top10}"
        );
        assert!(hits[400] > 0, "the tail still sells");
    }

    #[test]
    fn picks_respect_the_available_prefix() {
        let catalogue = Catalogue::new(5, 600);
        let mut rng = Rng::stream(5, 0, Stream::Orders);
        for _ in 0..10_000 {
            let id = catalogue.pick(&mut rng, 37);
            assert!((1..=37).contains(&id));
        }
    }
}
