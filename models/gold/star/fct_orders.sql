{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_id', target_file_size='8MiB') }}
-- One row per order (cancelled ones included, flagged): its keys to the
-- dimensions (customer, channel, day), ship-to country, current status,
-- revenue, and the number of lines and units from its clean lines.
--
-- Incremental: the orders merged into orders_clean since this table's
-- watermark (`orders_loaded_at`) are recomputed and merged on order_id,
-- in order_id order so that a night's merge rewrites only the last files.
with orders as (
    select order_id, customer_id, order_ts, order_date, order_month, channel, country, status, total_amount
    from {{ ref('orders_clean') }}
    {% if is_incremental() %}
    where loaded_at > (select max(orders_loaded_at) from {{ this }})
    {% endif %}
),

lines as (
    select order_id, count(*) as lines, sum(quantity) as units
    from {{ ref('order_items_clean') }}
    {% if is_incremental() %}
    -- The bound skips the files of older orders' lines, which the join
    -- would read in full.
    where order_id >= (select min(order_id) from orders)
    {% endif %}
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
    {{ is_revenue_order('o.status') }} as is_revenue,
    case when {{ is_revenue_order('o.status') }} then o.total_amount else cast(0 as decimal(12, 2)) end as revenue,
    o.total_amount,
    coalesce(l.lines, 0) as lines,
    coalesce(l.units, 0) as units,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from orders o
left join lines l on l.order_id = o.order_id
order by o.order_id
