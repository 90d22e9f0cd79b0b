{{ config(reject_reason_column='reject_reason') }}
select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    delivery,
    reject_reason
from {{ ref('order_events_validated') }}
where reject_reason is not null
