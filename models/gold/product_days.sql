{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='order_date') }}
-- Per UTC day of order creation and product: the revenue orders with a line
-- of the product, their units and revenue at the price paid. What
-- kpis_produit sums over days and sales_by_day sums over products, so that
-- the order lines are joined to their orders once, for the days that
-- changed, rather than by each model over every line. An order has one
-- day, so the orders of a product add up across days without counting one
-- twice.
--
-- Incremental: only the days of the orders merged into orders_clean since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in full,
-- and replace their partitions.
with orders as (
    select order_id, order_date
    from {{ ref('revenue_orders') }}
    {% if is_incremental() %}
    where {{ of_changed_orders('order_date') }}
    {% endif %}
)

select
    o.order_date,
    i.product_id,
    count(distinct i.order_id) as orders,
    sum(i.quantity) as units,
    sum(i.revenue) as revenue,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from orders o
join {{ ref('order_items_clean') }} i on i.order_id = o.order_id
{% if is_incremental() %}
-- The same for the lines, appended in the order their orders came: a
-- bound skips the files of older orders, which the join would read in full.
where i.order_id >= (select min(order_id) from orders)
{% endif %}
group by o.order_date, i.product_id
