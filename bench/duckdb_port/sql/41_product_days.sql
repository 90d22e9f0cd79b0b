-- models/gold/product_days.sql (incremental insert_overwrite by
-- order_date; full build). DuckDB sums integers into a HUGEINT (which its
-- Parquet writer stores as a double): cast back to DataFusion's BIGINT.
create or replace table gold_product_days as
with orders as (
    select order_id, order_date
    from revenue_orders
)

select
    o.order_date,
    i.product_id,
    count(distinct i.order_id) as orders,
    cast(sum(i.quantity) as bigint) as units,
    sum(i.revenue) as revenue,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from orders o
join silver_order_items_clean i on i.order_id = o.order_id
group by o.order_date, i.product_id;
