{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Rejection looks at one version alone: each bronze file is read once,
-- its rejected versions appended.
-- Raw order_ts and channel stay beside their parsed forms so that the dirt
-- is readable.
select
    order_id,
    customer_id,
    order_ts_raw,
    updated_at,
    status,
    channel_raw,
    country,
    total_amount,
    reject_reason
from {{ ref('orders_validated') }}
where reject_reason is not null
