//! Renders the order feeds of one day (orders, order_items, order_events)
//! from the simulated batches of the days whose rows can land on it.
//!
//! Rows are written in the order a real feed would deliver them: orders by
//! `updated_at`, events by `ingested_at` (except the rows the simulation
//! moved on purpose), items by order and line. Ties are broken by order id
//! and position so the order is total and the bytes reproducible.

use crate::calendar::{push_ts, push_ts_naive, push_ts_offset};
use crate::customers::COUNTRIES;
use crate::encode::{push_hex, push_i64, push_money, push_u64};
use crate::orders::{Batch, CHANNELS, Order, Spelling, TsStyle, Version, VersionDirt, WINDOW};
use crate::rng::{Tag, hash_unique};
use crate::stats::{Entity, Kind, Tally};

/// The versions and events of `window` that land on `day`, with their batch.
fn landing<'a, T>(window: &'a [Batch], day: u32, rows: fn(&'a Batch) -> &'a [Vec<T>]) -> Vec<(&'a Batch, &'a T)> {
    let mut out = Vec::new();
    for batch in window {
        let offset = day - batch.day;
        if offset < WINDOW {
            out.extend(rows(batch)[offset as usize].iter().map(|row| (batch, row)));
        }
    }
    out
}

fn push_spelled(buf: &mut Vec<u8>, word: &str, spelling: Spelling) -> bool {
    match spelling {
        Spelling::Plain => buf.extend_from_slice(word.as_bytes()),
        Spelling::Upper => buf.extend(word.bytes().map(|b| b.to_ascii_uppercase())),
        Spelling::Title => {
            buf.push(word.as_bytes()[0].to_ascii_uppercase());
            buf.extend_from_slice(&word.as_bytes()[1..]);
        }
        Spelling::Padded => {
            buf.push(b' ');
            buf.extend_from_slice(word.as_bytes());
            buf.push(b' ');
        }
    }
    spelling != Spelling::Plain
}

/// Writes the orders file of `day`: one JSON line per version.
pub fn write_orders(buf: &mut Vec<u8>, window: &[Batch], day: u32, tally: &mut Tally) {
    let mut rows = landing(window, day, |b| &b.versions);
    rows.sort_by_key(|(batch, v)| (v.updated_at, batch.orders[v.order as usize].id));
    let mut line = Vec::with_capacity(256);
    let mut kinds = Vec::with_capacity(8);
    for (batch, v) in rows {
        line.clear();
        kinds.clear();
        push_version(&mut line, &batch.orders[v.order as usize], v, &mut kinds);
        let copies = if v.duplicated { 2 } else { 1 };
        for copy in 0..copies {
            buf.extend_from_slice(&line);
            tally.row(Entity::Orders);
            kinds.iter().for_each(|&k| tally.kind(k));
            if copy == 1 {
                tally.kind(Kind::DuplicateVersion);
            }
        }
    }
}

/// Appends one version's line, and the kinds of dirt it carries to `kinds`.
fn push_version(buf: &mut Vec<u8>, order: &Order, v: &Version, kinds: &mut Vec<Kind>) {
    buf.extend_from_slice(b"{\"order_id\":");
    push_u64(buf, order.id);
    buf.extend_from_slice(b",\"customer_id\":");
    push_u64(buf, order.customer_id);
    buf.extend_from_slice(b",\"order_ts\":\"");
    match (v.dirt, v.ts) {
        (Some(VersionDirt::BadOrderTs(text)), _) => {
            buf.extend_from_slice(text.as_bytes());
            kinds.push(Kind::InvalidOrderTs);
        }
        (_, TsStyle::Utc) => push_ts(buf, order.created),
        (_, TsStyle::Naive) => {
            push_ts_naive(buf, order.created);
            kinds.push(Kind::OrderTsNaive);
        }
        (_, TsStyle::Offset(minutes)) => {
            push_ts_offset(buf, order.created, minutes);
            kinds.push(Kind::OrderTsOffset);
        }
        (_, TsStyle::Epoch) => {
            push_i64(buf, order.created);
            kinds.push(Kind::OrderTsEpoch);
        }
    }
    buf.extend_from_slice(b"\",\"updated_at\":\"");
    push_ts(buf, v.updated_at);
    buf.extend_from_slice(b"\",\"status\":\"");
    if push_spelled(buf, v.status.name(), v.status_spelling) {
        kinds.push(Kind::StatusCase);
    }
    buf.extend_from_slice(b"\",\"channel\":\"");
    if let Some(VersionDirt::BadChannel(text)) = v.dirt {
        buf.extend_from_slice(text.as_bytes());
        kinds.push(Kind::UnknownChannel);
    } else if push_spelled(buf, CHANNELS[order.channel as usize], v.channel_spelling) {
        kinds.push(Kind::ChannelCase);
    }
    buf.extend_from_slice(b"\",\"country\":\"");
    buf.extend_from_slice(COUNTRIES[order.country as usize].code.as_bytes());
    buf.extend_from_slice(b"\",\"total_amount\":");
    if v.null_total {
        buf.extend_from_slice(b"null");
        kinds.push(Kind::NullTotalAmount);
    } else {
        push_money(buf, order.total_cents);
    }
    buf.extend_from_slice(b"}\n");
}

pub const ITEMS_HEADER: &str = "order_id,line_no,product_id,quantity,unit_price\n";

/// Writes the order_items file of a batch's creation day.
pub fn write_items(buf: &mut Vec<u8>, batch: &Batch, tally: &mut Tally) {
    buf.extend_from_slice(ITEMS_HEADER.as_bytes());
    for line in &batch.lines {
        push_u64(buf, line.order_id);
        buf.push(b',');
        push_u64(buf, u64::from(line.line_no));
        buf.push(b',');
        push_u64(buf, line.product_id);
        buf.push(b',');
        push_i64(buf, line.quantity);
        buf.push(b',');
        if let Some(price) = line.unit_price {
            push_money(buf, price);
        }
        buf.push(b'\n');
        tally.row(Entity::OrderItems);
        if let Some(kind) = line.dirt {
            tally.kind(kind);
        }
    }
}

/// The id of the event of status change `seq` of an order: 64 opaque bits,
/// distinct for distinct events because the hash is a bijection.
fn event_id(seed: u64, order_id: u64, seq: u8) -> u64 {
    hash_unique(seed, Tag::EventId, order_id << 3 | u64::from(seq))
}

/// Writes the order_events file of `day`.
pub fn write_events(buf: &mut Vec<u8>, seed: u64, window: &[Batch], day: u32, tally: &mut Tally) {
    let mut rows = landing(window, day, |b| &b.events);
    rows.sort_by_key(|(batch, e)| (e.sort_key, batch.orders[e.order as usize].id, e.seq, e.duplicate));
    for (batch, e) in rows {
        let order = &batch.orders[e.order as usize];
        buf.extend_from_slice(b"{\"event_id\":\"evt_");
        push_hex(buf, event_id(seed, order.id, e.seq));
        buf.extend_from_slice(b"\",\"order_id\":");
        push_u64(buf, order.id);
        buf.extend_from_slice(b",\"event_type\":\"");
        buf.extend_from_slice(e.status.event_type().as_bytes());
        buf.extend_from_slice(b"\",\"event_ts\":\"");
        push_ts(buf, e.event_ts);
        buf.extend_from_slice(b"\",\"ingested_at\":\"");
        push_ts(buf, e.ingested_at);
        buf.extend_from_slice(b"\"}\n");
        tally.row(Entity::OrderEvents);
        if e.duplicate {
            tally.kind(Kind::DuplicateEvent);
        }
        if e.late {
            tally.kind(Kind::LateArrival);
        }
        if e.moved {
            tally.kind(Kind::OutOfOrder);
        }
    }
}
