-- models/gold/order_lifecycle.sql (incremental merge on order_id; full
-- build).
create or replace table gold_order_lifecycle as
with steps as (
    select
        order_id,
        min(case when event_type = 'ORDER_PAID' then event_ts end) as paid_at,
        min(case when event_type = 'ORDER_SHIPPED' then event_ts end) as shipped_at,
        min(case when event_type = 'ORDER_DELIVERED' then event_ts end) as delivered_at,
        min(case when event_type = 'ORDER_CANCELLED' then event_ts end) as cancelled_at
    from silver_order_events_clean
    group by order_id
),

orders as (
    select order_id, channel, order_date, status, order_ts
    from silver_orders_clean
),

timed as (
    select
        o.order_id,
        o.channel,
        o.order_date,
        o.status,
        o.order_ts as created_at,
        s.paid_at,
        s.shipped_at,
        s.delivered_at,
        s.cancelled_at,
        date_part('epoch', o.order_ts) as created_epoch,
        date_part('epoch', s.paid_at) as paid_epoch,
        date_part('epoch', s.shipped_at) as shipped_epoch,
        date_part('epoch', s.delivered_at) as delivered_epoch
    from orders o
    left join steps s on s.order_id = o.order_id
)

select
    order_id,
    channel,
    order_date,
    status,
    case status
        when 'created' then 'awaiting_payment'
        when 'paid' then 'awaiting_shipment'
        when 'shipped' then 'in_transit'
        when 'delivered' then 'delivered'
        when 'cancelled' then 'cancelled'
    end as stage,
    created_at,
    paid_at,
    shipped_at,
    delivered_at,
    cancelled_at,
    round((paid_epoch - created_epoch) / 60, 1) as minutes_to_payment,
    round((shipped_epoch - created_epoch) / 3600, 1) as hours_to_shipping,
    round((delivered_epoch - created_epoch) / 3600, 1) as hours_to_delivery,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at,
    (select max(loaded_at) from silver_order_events_clean) as events_loaded_at
from timed;
