-- models/gold/star/fct_order_lines.sql (incremental insert_overwrite by
-- order_date; full build).
create or replace table gold_fct_order_lines as
with orders as (
    select order_id, customer_id, order_date, channel, status
    from silver_orders_clean
)

select
    o.order_date,
    i.order_id,
    i.line_no,
    i.product_id,
    o.customer_id,
    o.channel,
    o.status,
    o.status <> 'cancelled' as is_revenue,
    i.quantity,
    i.unit_price,
    i.revenue,
    cast(i.quantity * p.cost as decimal(14, 2)) as cost,
    cast(i.revenue - i.quantity * p.cost as decimal(14, 2)) as margin,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from orders o
join silver_order_items_clean i on i.order_id = o.order_id
left join silver_products_clean p on p.product_id = i.product_id;
