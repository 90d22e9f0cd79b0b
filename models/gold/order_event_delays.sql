-- How the order events arrived, per UTC day they were ingested: events,
-- late ones (ingested on a later day than they happened: a build reading
-- only that day's file would have missed them), out-of-order ones (an
-- event that arrived after a later step of the same order had arrived),
-- and the worst delay in hours.
with events as (
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
)

select
    cast(ingested_at as date) as ingested_date,
    count(*) as events,
    count(*) filter (where is_late) as late_events,
    count(*) filter (where latest_before > event_ts) as out_of_order_events,
    round(cast(count(*) filter (where is_late) as double) / cast(count(*) as double), 4) as late_share,
    round(max(date_part('epoch', ingested_at) - date_part('epoch', event_ts)) / 3600, 1) as max_delay_hours
from events
group by cast(ingested_at as date)
