{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='click_date') }}
-- One row per valid page view, grouped into sessions: a visitor's views
-- (a customer, or an anonymous visitor by the pseudonym of their address)
-- belong to one session until a gap of more than `session_gap_minutes`
-- (project var), and a session ends at midnight UTC as in web analytics.
-- The page's kind and the product it shows are parsed from its path.
--
-- Incremental: only the days with clicks appended to clicks_clean since
-- this table's watermark (`clicks_loaded_at`) are sessionised again, each
-- in full, and replace their partitions.
with clicks as (
    select visitor_id, customer_id, channel, page, ts, cast(ts as date) as click_date
    from {{ ref('clicks_clean') }}
    {% if is_incremental() %}
    where cast(ts as date) in (
        select distinct cast(ts as date) from {{ ref('clicks_clean') }}
        where loaded_at > (select max(clicks_loaded_at) from {{ this }})
    )
    {% endif %}
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
            when ts - previous_ts > interval '{{ var("session_gap_minutes") }} minutes' then 1
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
    case when page like '/product/%' then try_cast(substr(page, 10) as bigint) end as product_id,
    concat(visitor_id, '-', to_char(click_date, '%Y%m%d'), '-', cast(session_number as varchar)) as session_id,
    row_number() over (partition by visitor_id, click_date, session_number order by ts, page) as page_in_session,
    (select max(loaded_at) from {{ ref('clicks_clean') }}) as clicks_loaded_at
from numbered
