{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Later deliveries of an event. Each bronze file is read once: a delivery
-- counts those of the same event in the files read before (the first in
-- order_events_clean, the others here), so that it is numbered as a full
-- rebuild numbers it.
with new as (
    select *
    from {{ ref('order_events_validated') }}
),

{% if is_incremental() %}
earlier as (
    select event_id, count(*) as deliveries
    from (
        select event_id from {{ ref('order_events_clean') }} where loaded_at < {{ loaded_at() }}
        union all
        select event_id from {{ this }}
    ) d
    -- Only the events delivered again now: counting every stored event's
    -- deliveries would group the whole history each night.
    where event_id in (select event_id from new)
    group by event_id
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
