{{ config(materialized='incremental', incremental_strategy='append') }}
-- One row per event, as first delivered, appended as its bronze file
-- arrives (each file is read once; an event already stored is a later
-- delivery, rejected in order_events_rejected). `is_late` marks an event that
-- landed in a later day's file than the day it happened: a daily build
-- that only reads the new day's file would have missed it.
select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    cast(ingested_at as date) > cast(event_ts as date) as is_late,
    {{ loaded_at() }} as loaded_at
from {{ ref('order_events_validated') }}
where reject_reason is null
{% if is_incremental() %}
  and event_id not in (select event_id from {{ this }})
{% endif %}
