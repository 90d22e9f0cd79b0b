-- How the order events arrived, per UTC day they were ingested: events,
-- late ones (ingested on a later day than they happened: a build reading
-- only that day's file would have missed them), out-of-order ones (an
-- event that arrived after a later step of the same order had arrived),
-- and the worst delay in hours.
--
-- Incremental: the days of the events appended to order_events_clean
-- since this table's watermark (`events_loaded_at`) are recomputed, each
-- in full, and replace their rows; so is every later day on which an
-- order of those events had an event, since whether an event arrived out
-- of order depends on the order's earlier arrivals. The bounds on
-- `ingested_at` and `order_id` let the scans skip the files of older
-- nights (order_events_clean is appended night by night).
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='ingested_date') }}
with
{% if is_incremental() %}
new_events as (
    select order_id, min(ingested_at) as first_new
    from {{ ref('order_events_clean') }}
    where loaded_at > (select max(events_loaded_at) from {{ this }})
    group by order_id
),

changed_days as (
    select distinct cast(e.ingested_at as date) as ingested_date
    from {{ ref('order_events_clean') }} e
    join new_events n on n.order_id = e.order_id
    where e.ingested_at >= (select min(first_new) from new_events)
        and e.ingested_at >= n.first_new
),

-- Every order with an event on a recomputed day: the window needs all of
-- its events.
day_orders as (
    select distinct order_id
    from {{ ref('order_events_clean') }}
    where ingested_at >= (select cast(min(ingested_date) as timestamp) from changed_days)
        and cast(ingested_at as date) in (select ingested_date from changed_days)
),
{% endif %}

events as (
    select
        order_id,
        event_ts,
        ingested_at,
        is_late,
        -- The latest step of the order that had already arrived.
        max(event_ts) over (
            partition by order_id order by ingested_at, event_ts
            rows between unbounded preceding and 1 preceding
        ) as latest_before
    from {{ ref('order_events_clean') }}
    {% if is_incremental() %}
    where order_id >= (select min(order_id) from day_orders)
        and order_id in (select order_id from day_orders)
    {% endif %}
)

select
    cast(ingested_at as date) as ingested_date,
    count(*) as events,
    count(*) filter (where is_late) as late_events,
    count(*) filter (where latest_before > event_ts) as out_of_order_events,
    round(cast(count(*) filter (where is_late) as double) / cast(count(*) as double), 4) as late_share,
    round(max(date_part('epoch', ingested_at) - date_part('epoch', event_ts)) / 3600, 1) as max_delay_hours,
    (select max(loaded_at) from {{ ref('order_events_clean') }}) as events_loaded_at
from events
{% if is_incremental() %}
where cast(ingested_at as date) in (select ingested_date from changed_days)
{% endif %}
group by cast(ingested_at as date)
