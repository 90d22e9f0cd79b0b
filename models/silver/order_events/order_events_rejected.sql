{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Later deliveries of an event. Each bronze file is read once: a delivery
-- counts those of the same event received before it (the first in
-- order_events_clean, the others here), so that it is numbered as a full
-- rebuild numbers it, by `ingested_at`.
--
-- "Before" is read off the data, never off the build's clock: a night
-- killed after order_events_clean committed the day's first deliveries,
-- and run again, must number them as an uninterrupted night does, and
-- those rows are already in order_events_clean, stamped with the killed
-- build's `loaded_at` (see: issue 23).
with new as (
    select *
    from {{ ref('order_events_validated') }}
),

{% if is_incremental() %}
earlier as (
    select d.event_id, count(*) as deliveries
    from (
        select event_id, ingested_at from {{ ref('order_events_clean') }}
        union all
        select event_id, ingested_at from {{ this }}
    ) d
    -- Only the events delivered again now: counting every stored event's
    -- deliveries would group the whole history each night.
    join (
        select event_id, min(ingested_at) as first_new
        from new
        group by event_id
    ) f on f.event_id = d.event_id
    where d.ingested_at < f.first_new
    group by d.event_id
),
{% endif %}

numbered as (
    select
        n.event_id,
        n.order_id,
        n.event_type,
        n.event_ts,
        n.ingested_at,
        {% if is_incremental() %}
        n.delivery + coalesce(e.deliveries, 0) as delivery,
        case when e.deliveries is null then n.reject_reason else coalesce(n.reject_reason, 'duplicate_event') end
            as reject_reason
        {% else %}
        n.delivery,
        n.reject_reason
        {% endif %}
    from new n
    {% if is_incremental() %}
    left join earlier e on e.event_id = n.event_id
    {% endif %}
)

select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    delivery,
    reject_reason
from numbered
where reject_reason is not null
