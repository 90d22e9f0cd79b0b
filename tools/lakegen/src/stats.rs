//! What was written: rows per entity, and rows per kind of dirt.
//!
//! Every dirty row the generator writes is counted under exactly one
//! [`Kind`], at the moment it is written (a row decided for a day past the
//! end of the lake is never counted). Tests and the models' data tests assert
//! against these exact numbers, so the names here are an interface: they are
//! the keys of `_lakegen.json`.
//!
//! A kind is either a *reject* (the models must route the row to a reject
//! table: the row is wrong and no cleaning can fix it) or *noise* (the row is
//! right but badly spelled or repeated; the models clean it and keep it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The eight bronze entities, one folder each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Customers,
    Products,
    Orders,
    OrderItems,
    OrderEvents,
    Clicks,
    Suppliers,
    Stock,
}

impl Entity {
    pub const ALL: [Entity; 8] = [
        Entity::Customers,
        Entity::Products,
        Entity::Orders,
        Entity::OrderItems,
        Entity::OrderEvents,
        Entity::Clicks,
        Entity::Suppliers,
        Entity::Stock,
    ];

    /// The folder under the lake root, and the key in `_lakegen.json`.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Customers => "customers",
            Entity::Products => "products",
            Entity::Orders => "orders",
            Entity::OrderItems => "order_items",
            Entity::OrderEvents => "order_events",
            Entity::Clicks => "clicks",
            Entity::Suppliers => "suppliers",
            Entity::Stock => "stock",
        }
    }

    /// The file extension, compression included.
    pub fn extension(self) -> &'static str {
        match self {
            Entity::Customers | Entity::Products | Entity::OrderItems | Entity::Suppliers | Entity::Stock => "csv.gz",
            Entity::Orders | Entity::OrderEvents | Entity::Clicks => "jsonl.gz",
        }
    }
}

/// Every kind of dirt, with the entity it appears in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    // customers: rejects (only on customers who never order)
    MissingEmail,
    InvalidSignupDate,
    // customers: noise
    EmailCase,
    EmailWhitespace,
    CountryLowercase,
    SignupDateDayMonthYear,
    SignupDateYearSlash,
    SignupDateCompact,
    // orders: rejects (always an extra version of an order that has valid ones)
    InvalidOrderTs,
    UnknownChannel,
    // orders: noise
    StatusCase,
    ChannelCase,
    NullTotalAmount,
    OrderTsNaive,
    OrderTsOffset,
    OrderTsEpoch,
    DuplicateVersion,
    // order_items: rejects (always an extra line, never part of a total)
    NonPositiveQuantity,
    MissingUnitPrice,
    OrphanOrderId,
    // order_events: rejects
    DuplicateEvent,
    // order_events: noise
    LateArrival,
    OutOfOrder,
    // clicks: rejects
    InvalidIp,
    // clicks: noise (a legitimate null the models keep)
    AnonymousVisitor,
    // suppliers: rejects (always an extra copy of a supplier that has a valid row)
    InvalidLeadTime,
    // suppliers: noise
    SupplierCountryLowercase,
    SupplierNameWhitespace,
    DuplicateSupplier,
    // stock: rejects
    NegativeOnHand,
    UnknownProduct,
    // stock: noise
    DuplicateSnapshot,
    SnapshotDateDayMonthYear,
}

impl Kind {
    pub const ALL: [Kind; 33] = [
        Kind::MissingEmail,
        Kind::InvalidSignupDate,
        Kind::EmailCase,
        Kind::EmailWhitespace,
        Kind::CountryLowercase,
        Kind::SignupDateDayMonthYear,
        Kind::SignupDateYearSlash,
        Kind::SignupDateCompact,
        Kind::InvalidOrderTs,
        Kind::UnknownChannel,
        Kind::StatusCase,
        Kind::ChannelCase,
        Kind::NullTotalAmount,
        Kind::OrderTsNaive,
        Kind::OrderTsOffset,
        Kind::OrderTsEpoch,
        Kind::DuplicateVersion,
        Kind::NonPositiveQuantity,
        Kind::MissingUnitPrice,
        Kind::OrphanOrderId,
        Kind::DuplicateEvent,
        Kind::LateArrival,
        Kind::OutOfOrder,
        Kind::InvalidIp,
        Kind::AnonymousVisitor,
        Kind::InvalidLeadTime,
        Kind::SupplierCountryLowercase,
        Kind::SupplierNameWhitespace,
        Kind::DuplicateSupplier,
        Kind::NegativeOnHand,
        Kind::UnknownProduct,
        Kind::DuplicateSnapshot,
        Kind::SnapshotDateDayMonthYear,
    ];

    /// The key in `_lakegen.json`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MissingEmail => "missing_email",
            Kind::InvalidSignupDate => "invalid_signup_date",
            Kind::EmailCase => "email_case",
            Kind::EmailWhitespace => "email_whitespace",
            Kind::CountryLowercase => "country_lowercase",
            Kind::SignupDateDayMonthYear => "signup_date_dd_mm_yyyy",
            Kind::SignupDateYearSlash => "signup_date_yyyy_mm_dd_slash",
            Kind::SignupDateCompact => "signup_date_yyyymmdd",
            Kind::InvalidOrderTs => "invalid_order_ts",
            Kind::UnknownChannel => "unknown_channel",
            Kind::StatusCase => "status_case",
            Kind::ChannelCase => "channel_case",
            Kind::NullTotalAmount => "null_total_amount",
            Kind::OrderTsNaive => "order_ts_naive",
            Kind::OrderTsOffset => "order_ts_offset",
            Kind::OrderTsEpoch => "order_ts_epoch",
            Kind::DuplicateVersion => "duplicate_version",
            Kind::NonPositiveQuantity => "non_positive_quantity",
            Kind::MissingUnitPrice => "missing_unit_price",
            Kind::OrphanOrderId => "orphan_order_id",
            Kind::DuplicateEvent => "duplicate_event",
            Kind::LateArrival => "late_arrival",
            Kind::OutOfOrder => "out_of_order",
            Kind::InvalidIp => "invalid_ip",
            Kind::AnonymousVisitor => "anonymous_visitor",
            Kind::InvalidLeadTime => "invalid_lead_time",
            Kind::SupplierCountryLowercase => "country_lowercase",
            Kind::SupplierNameWhitespace => "name_whitespace",
            Kind::DuplicateSupplier => "duplicate_row",
            Kind::NegativeOnHand => "negative_on_hand",
            Kind::UnknownProduct => "unknown_product",
            Kind::DuplicateSnapshot => "duplicate_snapshot",
            Kind::SnapshotDateDayMonthYear => "snapshot_date_dd_mm_yyyy",
        }
    }

    pub fn entity(self) -> Entity {
        use Kind::*;
        match self {
            MissingEmail
            | InvalidSignupDate
            | EmailCase
            | EmailWhitespace
            | CountryLowercase
            | SignupDateDayMonthYear
            | SignupDateYearSlash
            | SignupDateCompact => Entity::Customers,
            InvalidOrderTs | UnknownChannel | StatusCase | ChannelCase | NullTotalAmount | OrderTsNaive
            | OrderTsOffset | OrderTsEpoch | DuplicateVersion => Entity::Orders,
            NonPositiveQuantity | MissingUnitPrice | OrphanOrderId => Entity::OrderItems,
            DuplicateEvent | LateArrival | OutOfOrder => Entity::OrderEvents,
            InvalidIp | AnonymousVisitor => Entity::Clicks,
            InvalidLeadTime | SupplierCountryLowercase | SupplierNameWhitespace | DuplicateSupplier => {
                Entity::Suppliers
            }
            NegativeOnHand | UnknownProduct | DuplicateSnapshot | SnapshotDateDayMonthYear => Entity::Stock,
        }
    }

    pub fn is_reject(self) -> bool {
        use Kind::*;
        matches!(
            self,
            MissingEmail
                | InvalidSignupDate
                | InvalidOrderTs
                | UnknownChannel
                | NonPositiveQuantity
                | MissingUnitPrice
                | OrphanOrderId
                | DuplicateEvent
                | InvalidIp
                | InvalidLeadTime
                | NegativeOnHand
                | UnknownProduct
        )
    }
}

/// Counters bumped while writing; cheap enough for the hot path.
#[derive(Clone, Debug)]
pub struct Tally {
    rows: [u64; Entity::ALL.len()],
    kinds: [u64; Kind::ALL.len()],
    /// Distinct orders created on the days written.
    pub orders_created: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            rows: [0; Entity::ALL.len()],
            kinds: [0; Kind::ALL.len()],
            orders_created: 0,
        }
    }
}

impl Tally {
    pub fn row(&mut self, entity: Entity) {
        self.rows[entity as usize] += 1;
    }

    pub fn kind(&mut self, kind: Kind) {
        self.kinds[kind as usize] += 1;
    }

    pub fn rows(&self, entity: Entity) -> u64 {
        self.rows[entity as usize]
    }

    pub fn count(&self, kind: Kind) -> u64 {
        self.kinds[kind as usize]
    }

    /// The serialisable form, with every kind present (zeros included) so a
    /// test can index any name without guarding.
    pub fn to_stats(&self) -> Stats {
        let mut entities = BTreeMap::new();
        for entity in Entity::ALL {
            let mut e = EntityStats {
                rows: self.rows(entity),
                rejects: BTreeMap::new(),
                noise: BTreeMap::new(),
            };
            for kind in Kind::ALL.into_iter().filter(|k| k.entity() == entity) {
                let map = if kind.is_reject() { &mut e.rejects } else { &mut e.noise };
                map.insert(kind.name().to_owned(), self.count(kind));
            }
            entities.insert(entity.name().to_owned(), e);
        }
        Stats {
            orders_created: self.orders_created,
            entities,
        }
    }
}

/// Counts of one entity's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityStats {
    /// Data rows written (headers excluded), dirty ones included.
    pub rows: u64,
    /// Rows per reject reason.
    pub rejects: BTreeMap<String, u64>,
    /// Rows per kind of recoverable noise.
    pub noise: BTreeMap<String, u64>,
}

impl EntityStats {
    /// All rows carrying reject dirt.
    pub fn rejected(&self) -> u64 {
        self.rejects.values().sum()
    }
}

/// Counts of everything written, keyed by entity name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct orders created on the days written (some still in flight at
    /// the last day).
    pub orders_created: u64,
    pub entities: BTreeMap<String, EntityStats>,
}

impl Stats {
    /// Adds another set of counts, e.g. an appended day's.
    pub fn add(&mut self, other: &Stats) {
        self.orders_created += other.orders_created;
        for (name, theirs) in &other.entities {
            let ours = self.entities.entry(name.clone()).or_default();
            ours.rows += theirs.rows;
            for (k, v) in &theirs.rejects {
                *ours.rejects.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &theirs.noise {
                *ours.noise.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// The counts of one entity, by its folder name (`"orders"`).
    pub fn entity(&self, name: &str) -> Option<&EntityStats> {
        self.entities.get(name)
    }
}
