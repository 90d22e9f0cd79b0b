{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Each bronze file is read once; its rejected rows are appended with the
-- date as received.
select
    snapshot_date_raw,
    product_id,
    on_hand,
    reject_reason
from {{ ref('stock_validated') }}
where reject_reason is not null
