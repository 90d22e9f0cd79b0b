//! etl's own query options, a DataFusion config extension: set like
//! DataFusion's, read by the rules they switch.

use datafusion::common::extensions_options;
use datafusion::config::ConfigExtension;

extensions_options! {
    /// etl's own query options, beside DataFusion's and set the same ways:
    /// `ETL_SHARE_REPEATED_SUBPLANS=false` in the environment, or
    /// `SET etl.share_repeated_subplans = false` in a model's `sql_header`.
    pub struct EtlOptions {
        /// Run a part of a query that appears in several places, identical
        /// and holding an aggregate or a window (a CTE read twice), once
        /// for all its readers.
        pub share_repeated_subplans: bool, default = true
        /// Evaluate window functions a chunk of whole partitions at a
        /// time (`row_number`, `rank`, `lag`, running sums...) rather than
        /// partition by partition as DataFusion does.
        pub whole_partition_windows: bool, default = true
    }
}

impl ConfigExtension for EtlOptions {
    const PREFIX: &'static str = "etl";
}
