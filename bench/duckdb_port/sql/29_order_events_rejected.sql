-- models/silver/order_events/order_events_rejected.sql (incremental
-- append; a full build numbers every delivery over the whole feed).
create or replace table silver_order_events_rejected as
select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    delivery,
    reject_reason
from order_events_validated
where reject_reason is not null;
