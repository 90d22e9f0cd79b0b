-- models/silver/order_events/order_events_clean.sql (incremental append;
-- a full build keeps each event's first delivery).
create or replace table silver_order_events_clean as
select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    cast(ingested_at as date) > cast(event_ts as date) as is_late,
    current_timestamp as loaded_at
from order_events_validated
where reject_reason is null;
