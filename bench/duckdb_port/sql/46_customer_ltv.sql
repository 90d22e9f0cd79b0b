-- models/gold/customer_ltv.sql (incremental merge on customer_id; full
-- build). average_order_value rounded exactly, as in sales_by_day.
create or replace table gold_customer_ltv as
with orders as (
    select customer_id, order_date, status, total_amount
    from silver_orders_clean
),

per_customer as (
    select
        customer_id,
        count(*) as orders,
        count(*) filter (where status <> 'cancelled') as revenue_orders,
        min(order_date) filter (where status <> 'cancelled') as first_order_date,
        max(order_date) filter (where status <> 'cancelled') as last_order_date,
        coalesce(sum(total_amount) filter (where status <> 'cancelled'), 0) as lifetime_value
    from orders
    group by customer_id
)

select
    customer_id,
    orders,
    revenue_orders,
    first_order_date,
    cast(date_trunc('month', first_order_date) as date) as cohort_month,
    last_order_date,
    lifetime_value,
    cast(case when revenue_orders > 0 then
        cast(sign(lifetime_value) * ((abs(cast(lifetime_value * 100 as hugeint)) * 2 + revenue_orders) // (2 * revenue_orders)) as decimal(38, 0)) * 0.01
    end as decimal(12, 2)) as average_order_value,
    case
        when revenue_orders = 0 then 'no_revenue'
        when lifetime_value >= 1000 then 'vip'
        when revenue_orders >= 4 then 'loyal'
        when revenue_orders >= 2 then 'repeat'
        else 'one_time'
    end as segment,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from per_customer;
