-- models/gold/click_behaviour.sql (table).
create or replace table gold_click_behaviour as
with sessions as (
    select
        click_date,
        channel,
        session_id,
        count(*) as pages,
        max(case when page_type = 'checkout' then 1 else 0 end) as reached_checkout
    from gold_fct_clicks
    group by click_date, channel, session_id
),

traffic as (
    select
        s.click_date,
        s.channel,
        count(*) as sessions,
        cast(sum(s.pages) as bigint) as page_views,
        cast(sum(s.reached_checkout) as bigint) as checkout_sessions
    from sessions s
    group by s.click_date, s.channel
),

views as (
    select
        click_date,
        channel,
        count(distinct visitor_id) as visitors,
        count(*) filter (where page_type = 'product') as product_views
    from gold_fct_clicks
    group by click_date, channel
),

orders as (
    select order_date, channel, count(*) as orders, sum(revenue) as revenue
    from gold_fct_orders
    where is_revenue
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
    round(cast(coalesce(o.orders, 0) as double) / cast(t.sessions as double), 4) as conversion_rate
from traffic t
left join views v on v.click_date = t.click_date and v.channel = t.channel
full outer join orders o on o.order_date = t.click_date and o.channel = t.channel;
