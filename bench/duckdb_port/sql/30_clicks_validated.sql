-- models/silver/clicks/clicks_validated.sql (ephemeral: a view); parse_ts
-- expanded as in orders_validated.
create or replace view clicks_validated as
with typed as (
    select
        customer_id,
        page,
        nullif(lower(trim(channel)), '') as channel,
        trim(ip) as ip,
        case
            when regexp_matches(trim(ts), '^\d{9,11}$')
                then to_timestamp(try_cast(trim(ts) as bigint))
            else try_cast(trim(ts) as timestamptz)
        end as ts
    from bronze_clicks
)

select
    *,
    case
        when ip is null
            or not regexp_matches(ip, '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$')
            then 'invalid_ip'
    end as reject_reason
from typed;
