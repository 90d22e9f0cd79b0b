-- models/gold/revenue_by_channel.sql (table).
create or replace table gold_revenue_by_channel as
with per_channel as (
    select
        order_month,
        channel,
        count(*) as orders,
        sum(revenue) as revenue
    from revenue_orders
    group by order_month, channel
)

select
    order_month,
    channel,
    orders,
    revenue,
    round(cast(revenue as double) / cast(sum(revenue) over (partition by order_month) as double), 4) as share_of_month
from per_channel
order by order_month, channel;
