-- One row per event, as first delivered. `is_late` marks an event that
-- landed in a later day's file than the day it happened: a daily build
-- that only reads the new day's file would have missed it.
select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    cast(ingested_at as date) > cast(event_ts as date) as is_late
from {{ ref('order_events_validated') }}
where reject_reason is null
