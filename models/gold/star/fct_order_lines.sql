{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='order_date') }}
-- One row per clean order line, with its order's keys (customer, channel,
-- day), the order's current status, the revenue at the price paid and the
-- cost at the catalogue's unit cost. A line of a cancelled order is kept
-- with `is_revenue` false, so that revenue = sum(revenue where is_revenue).
--
-- Incremental: only the days of the orders merged into orders_clean since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in
-- full, and replace their partitions (a status change can touch any line
-- of its day).
with orders as (
    select order_id, customer_id, order_date, channel, status
    from {{ ref('orders_clean') }}
    {% if is_incremental() %}
    where {{ of_changed_orders('order_date') }}
    {% endif %}
)

select
    o.order_date,
    i.order_id,
    i.line_no,
    i.product_id,
    o.customer_id,
    o.channel,
    o.status,
    {{ is_revenue_order('o.status') }} as is_revenue,
    i.quantity,
    i.unit_price,
    i.revenue,
    cast(i.quantity * p.cost as decimal(14, 2)) as cost,
    cast(i.revenue - i.quantity * p.cost as decimal(14, 2)) as margin,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from orders o
join {{ ref('order_items_clean') }} i on i.order_id = o.order_id
left join {{ ref('products_clean') }} p on p.product_id = i.product_id
{% if is_incremental() %}
where i.order_id >= (select min(order_id) from orders)
{% endif %}
