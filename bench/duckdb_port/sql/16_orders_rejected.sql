-- models/silver/orders/orders_rejected.sql (incremental append; full build).
create or replace table silver_orders_rejected as
select
    order_id,
    customer_id,
    order_ts_raw,
    updated_at,
    status,
    channel_raw,
    country,
    total_amount,
    reject_reason
from orders_validated
where reject_reason is not null;
