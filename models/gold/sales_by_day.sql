{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='order_date') }}
-- Daily sales, by the UTC day the order was created.
--
-- Incremental: only the days of the orders merged into orders_clean since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in full,
-- and replace their partitions. Units come from product_days, which has
-- recomputed the same days before.
with orders as (
    select order_id, order_date, customer_id, revenue
    from {{ ref('revenue_orders') }}
    {% if is_incremental() %}
    where {{ of_changed_orders('order_date') }}
    {% endif %}
),

units as (
    select order_date, sum(units) as units
    from {{ ref('product_days') }}
    group by order_date
),

days as (
    select
        order_date,
        count(*) as orders,
        count(distinct customer_id) as customers,
        sum(revenue) as revenue
    from orders
    group by order_date
)

select
    d.order_date,
    d.orders,
    d.customers,
    coalesce(u.units, 0) as units,
    d.revenue,
    cast(round(d.revenue / d.orders, 2) as decimal(12, 2)) as average_basket,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from days d
left join units u on u.order_date = d.order_date
order by d.order_date
