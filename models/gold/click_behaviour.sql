-- Customer behaviour from the clickstream, per day and channel: visitors,
-- sessions, page views and pages per session, product and checkout views,
-- and conversion, the revenue orders created that day on the channel per
-- session. The shops (`store`) have orders but no sessions: their row has
-- a null conversion.
--
-- Incremental: only the days whose clicks fct_clicks sessionised again
-- since this table's watermark (`clicks_loaded_at`), and the days of the
-- orders merged into fct_orders since (`orders_loaded_at`), are
-- recomputed, each in full, and replace their rows.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='activity_date') }}
with
{% if is_incremental() %}
changed_days as (
    select distinct click_date as activity_date
    from {{ ref('fct_clicks') }}
    where clicks_loaded_at > (select max(clicks_loaded_at) from {{ this }})
    union
    select distinct order_date
    from {{ ref('fct_orders') }}
    where orders_loaded_at > (select max(orders_loaded_at) from {{ this }})
),
{% endif %}

clicks as (
    select click_date, channel, session_id, visitor_id, page_type
    from {{ ref('fct_clicks') }}
    {% if is_incremental() %}
    -- The bound lets the scan skip the partitions of older days.
    where click_date >= (select min(activity_date) from changed_days)
        and click_date in (select activity_date from changed_days)
    {% endif %}
),

sessions as (
    select
        click_date,
        channel,
        session_id,
        count(*) as pages,
        max(case when page_type = 'checkout' then 1 else 0 end) as reached_checkout
    from clicks
    group by click_date, channel, session_id
),

traffic as (
    select
        s.click_date,
        s.channel,
        count(*) as sessions,
        sum(s.pages) as page_views,
        sum(s.reached_checkout) as checkout_sessions
    from sessions s
    group by s.click_date, s.channel
),

views as (
    select
        click_date,
        channel,
        count(distinct visitor_id) as visitors,
        count(*) filter (where page_type = 'product') as product_views
    from clicks
    group by click_date, channel
),

orders as (
    select order_date, channel, count(*) as orders, sum(revenue) as revenue
    from {{ ref('fct_orders') }}
    where is_revenue
    {% if is_incremental() %}
    and order_date >= (select min(activity_date) from changed_days)
    and order_date in (select activity_date from changed_days)
    {% endif %}
    group by order_date, channel
)

select
    coalesce(t.click_date, o.order_date) as activity_date,
    coalesce(t.channel, o.channel) as channel,
    coalesce(v.visitors, 0) as visitors,
    coalesce(t.sessions, 0) as sessions,
    coalesce(t.page_views, 0) as page_views,
    round(cast(t.page_views as double) / cast(t.sessions as double), 2) as pages_per_session,
    coalesce(v.product_views, 0) as product_views,
    coalesce(t.checkout_sessions, 0) as checkout_sessions,
    coalesce(o.orders, 0) as orders,
    coalesce(o.revenue, 0) as revenue,
    round(cast(coalesce(o.orders, 0) as double) / cast(t.sessions as double), 4) as conversion_rate,
    (select max(clicks_loaded_at) from {{ ref('fct_clicks') }}) as clicks_loaded_at,
    (select max(orders_loaded_at) from {{ ref('fct_orders') }}) as orders_loaded_at
from traffic t
left join views v on v.click_date = t.click_date and v.channel = t.channel
full outer join orders o on o.order_date = t.click_date and o.channel = t.channel
