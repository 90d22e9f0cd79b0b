{{ config(materialized='ephemeral') }}
-- The orders that make revenue (see macros/revenue.sql): the base every
-- gold model aggregates, so that they all agree. Units come from the order
-- lines, which only sales_by_day needs: it joins them itself, for the days
-- it recomputes, rather than every model aggregating every line.
select
    order_id,
    customer_id,
    order_ts,
    order_date,
    order_month,
    status,
    channel,
    country,
    total_amount as revenue,
    loaded_at
from {{ ref('orders_clean') }}
where {{ is_revenue_order('status') }}
