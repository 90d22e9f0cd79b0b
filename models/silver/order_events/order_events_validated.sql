{{ config(materialized='ephemeral') }}
-- Every bronze event, typed, with the reason it is rejected (null when
-- valid). The producer sometimes sends an event twice, in the same file or
-- days later: the first delivery is the event, later ones are duplicates.
with typed as (
    select
        event_id,
        order_id,
        upper(trim(event_type)) as event_type,
        {{ parse_ts('event_ts') }} as event_ts,
        {{ parse_ts('ingested_at') }} as ingested_at
    from {{ source('bronze', 'order_events') }}
),

numbered as (
    select
        *,
        row_number() over (partition by event_id order by ingested_at, event_ts) as delivery
    from typed
)

select
    event_id,
    order_id,
    event_type,
    event_ts,
    ingested_at,
    delivery,
    {{ reject_reason([
        ['duplicate_event', "delivery > 1"],
    ]) }} as reject_reason
from numbered
