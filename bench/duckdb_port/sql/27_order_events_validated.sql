-- models/silver/order_events/order_events_validated.sql (ephemeral: a
-- view); parse_ts expanded as in orders_validated.
create or replace view order_events_validated as
with typed as (
    select
        event_id,
        order_id,
        upper(trim(event_type)) as event_type,
        case
            when regexp_matches(trim(event_ts), '^\d{9,11}$')
                then to_timestamp(try_cast(trim(event_ts) as bigint))
            else try_cast(trim(event_ts) as timestamptz)
        end as event_ts,
        case
            when regexp_matches(trim(ingested_at), '^\d{9,11}$')
                then to_timestamp(try_cast(trim(ingested_at) as bigint))
            else try_cast(trim(ingested_at) as timestamptz)
        end as ingested_at
    from bronze_order_events
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
    case
        when delivery > 1 then 'duplicate_event'
    end as reject_reason
from numbered;
