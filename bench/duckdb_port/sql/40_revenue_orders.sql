-- models/gold/revenue_orders.sql (ephemeral: a view); is_revenue_order
-- expanded.
create or replace view revenue_orders as
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
from silver_orders_clean
where status <> 'cancelled';
