-- models/gold/average_order_value.sql (table). average_order_value
-- rounded exactly, as in sales_by_day.
create or replace table gold_average_order_value as
with orders as (
    select order_date, order_month, revenue from revenue_orders
),

periods as (
    select 'day' as period, order_date as period_start, order_date as period_end, count(*) as orders, sum(revenue) as revenue
    from orders
    group by order_date
    union all
    select 'month', order_month, cast(order_month + interval '1 month' - interval '1 day' as date), count(*), sum(revenue)
    from orders
    group by order_month
    union all
    select 'all', min(order_date), max(order_date), count(*), sum(revenue)
    from orders
)

select
    period,
    period_start,
    period_end,
    orders,
    revenue,
    cast(cast(sign(revenue) * ((abs(cast(revenue * 100 as hugeint)) * 2 + orders) // (2 * orders)) as decimal(38, 0)) * 0.01
        as decimal(12, 2)) as average_order_value
from periods;
