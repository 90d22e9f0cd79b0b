-- models/gold/star/fct_clicks.sql (incremental insert_overwrite by
-- click_date; full build). session_gap_minutes = 30. product_id: the shape
-- is checked before try_cast, which in DuckDB also reads ' 12' or '1.5'.
create or replace table gold_fct_clicks as
with clicks as (
    select visitor_id, customer_id, channel, page, ts, cast(ts as date) as click_date
    from silver_clicks_clean
),

gaps as (
    select
        *,
        lag(ts) over (partition by visitor_id, click_date order by ts, page) as previous_ts
    from clicks
),

marked as (
    select
        *,
        case
            when previous_ts is null then 1
            when ts - previous_ts > interval '30 minutes' then 1
            else 0
        end as starts_session
    from gaps
),

numbered as (
    select
        *,
        sum(starts_session) over (
            partition by visitor_id, click_date order by ts, page rows unbounded preceding
        ) as session_number
    from marked
)

select
    click_date,
    ts,
    visitor_id,
    customer_id,
    channel,
    page,
    case
        when page = '/' then 'home'
        when page like '/search%' then 'search'
        when page like '/product/%' then 'product'
        when page = '/cart' then 'cart'
        when page = '/checkout' then 'checkout'
        else 'other'
    end as page_type,
    case when page like '/product/%' and regexp_matches(substr(page, 10), '^[+-]?[0-9]+$')
        then try_cast(substr(page, 10) as bigint) end as product_id,
    concat(visitor_id, '-', strftime(click_date, '%Y%m%d'), '-', cast(session_number as varchar)) as session_id,
    row_number() over (partition by visitor_id, click_date, session_number order by ts, page) as page_in_session,
    (select max(loaded_at) from silver_clicks_clean) as clicks_loaded_at
from numbered;
