-- order_event_delays counts every event of order_events_clean once, and
-- every late one.
with delays as (
    select sum(events) as events, sum(late_events) as late_events from {{ ref('order_event_delays') }}
),

silver as (
    select count(*) as events, count(*) filter (where is_late) as late_events
    from {{ ref('order_events_clean') }}
)

select d.events, s.events as silver_events, d.late_events, s.late_events as silver_late_events
from delays d
cross join silver s
where d.events <> s.events or d.late_events <> s.late_events
