{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Each bronze file is read once; its rejected clicks are appended.
-- The malformed IP is kept: it is the evidence of the reject.
select
    customer_id,
    page,
    channel,
    ip,
    ts,
    reject_reason
from {{ ref('clicks_validated') }}
where reject_reason is not null
