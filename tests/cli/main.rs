//! End-to-end tests: run the `etl` binary on a temp copy of a fixture
//! project, then read back the Delta tables it wrote.

mod core;
mod data_tests;
mod dbt_oracle;
mod defer_and_empty;
mod docs_site;
mod incremental;
mod nightly;
mod notify;
mod outputs;
mod packages;
mod reference;
mod s3_server;
mod scd_snapshots;
mod selection;
mod serve;
mod snapshots;
mod storage;
mod support;
mod unit_tests;
mod watch;
