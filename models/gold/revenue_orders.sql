{{ config(materialized='ephemeral') }}
-- The orders that make revenue (see macros/revenue.sql), with their units:
-- the base every gold model aggregates, so that they all agree.
with units as (
    select order_id, sum(quantity) as units, count(*) as lines
    from {{ ref('order_items_clean') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.order_ts,
    o.order_date,
    {{ month_of('o.order_date') }} as order_month,
    o.status,
    o.channel,
    o.country,
    coalesce(u.units, 0) as units,
    coalesce(u.lines, 0) as lines,
    o.total_amount as revenue,
    o.loaded_at
from {{ ref('orders_clean') }} o
left join units u on u.order_id = o.order_id
where {{ is_revenue_order('o.status') }}
