{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='order_date') }}
-- Daily sales, by the UTC day the order was created.
--
-- Incremental: only the days of the orders merged into orders_clean since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in full,
-- and replace their partitions.
select
    order_date,
    count(*) as orders,
    count(distinct customer_id) as customers,
    sum(units) as units,
    sum(revenue) as revenue,
    cast(round(sum(revenue) / count(*), 2) as decimal(12, 2)) as average_basket,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from {{ ref('revenue_orders') }}
{% if is_incremental() %}
where order_date in (
    select order_date
    from {{ ref('orders_clean') }}
    where loaded_at > (select max(orders_loaded_at) from {{ this }})
)
{% endif %}
group by order_date
order by order_date
