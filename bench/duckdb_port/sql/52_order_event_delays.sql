-- models/gold/order_event_delays.sql (table). date_part('epoch', ...) is
-- a double of seconds in both engines.
create or replace table gold_order_event_delays as
with events as (
    select
        order_id,
        event_ts,
        ingested_at,
        is_late,
        max(event_ts) over (
            partition by order_id order by ingested_at, event_ts
            rows between unbounded preceding and 1 preceding
        ) as latest_before
    from silver_order_events_clean
)

select
    cast(ingested_at as date) as ingested_date,
    count(*) as events,
    count(*) filter (where is_late) as late_events,
    count(*) filter (where latest_before > event_ts) as out_of_order_events,
    round(cast(count(*) filter (where is_late) as double) / cast(count(*) as double), 4) as late_share,
    round(max(date_part('epoch', ingested_at) - date_part('epoch', event_ts)) / 3600, 1) as max_delay_hours
from events
group by cast(ingested_at as date);
