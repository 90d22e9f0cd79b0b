-- models/gold/star/fct_orders.sql (incremental merge on order_id; full
-- build).
create or replace table gold_fct_orders as
with orders as (
    select order_id, customer_id, order_ts, order_date, order_month, channel, country, status, total_amount
    from silver_orders_clean
),

lines as (
    select order_id, count(*) as lines, cast(sum(quantity) as bigint) as units
    from silver_order_items_clean
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.order_month,
    o.order_ts,
    o.channel,
    o.country as ship_country,
    o.status,
    o.status <> 'cancelled' as is_revenue,
    case when o.status <> 'cancelled' then o.total_amount else cast(0 as decimal(12, 2)) end as revenue,
    o.total_amount,
    coalesce(l.lines, 0) as lines,
    coalesce(l.units, 0) as units,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from orders o
left join lines l on l.order_id = o.order_id
order by o.order_id;
