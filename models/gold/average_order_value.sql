-- Average order value (revenue / revenue orders) per day, per month and
-- over everything, one grain per `period`: `day` rows start and end on
-- the day, `month` rows span the month, and the one `all` row spans the
-- first to the last day with orders.
with orders as (
    select order_date, order_month, revenue from {{ ref('revenue_orders') }}
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
    cast(round(revenue / orders, 2) as decimal(12, 2)) as average_order_value
from periods
