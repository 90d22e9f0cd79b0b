{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_id', target_file_size='8MiB') }}
-- One row per order: when each step of its life happened, from its events,
-- and how long each took from creation. An event can land days late, so a
-- step the order status already shows may not have its time yet.
--
-- Incremental: only the orders merged into orders_clean, or with events
-- appended to order_events_clean, since this table's watermarks
-- (`orders_loaded_at`, `events_loaded_at`) are recomputed, and merged on
-- order_id. The table is written in order_id order, in 8 MiB files, so
-- that the merge of recent orders reads and rewrites only the last files.
with
{% if is_incremental() %}
touched as (
    select order_id
    from {{ ref('orders_clean') }}
    where loaded_at > (select max(orders_loaded_at) from {{ this }})
    union
    select order_id
    from {{ ref('order_events_clean') }}
    where loaded_at > (select max(events_loaded_at) from {{ this }})
),
{% endif %}

steps as (
    select
        order_id,
        min(case when event_type = 'ORDER_PAID' then event_ts end) as paid_at,
        min(case when event_type = 'ORDER_SHIPPED' then event_ts end) as shipped_at,
        min(case when event_type = 'ORDER_DELIVERED' then event_ts end) as delivered_at,
        min(case when event_type = 'ORDER_CANCELLED' then event_ts end) as cancelled_at
    from {{ ref('order_events_clean') }}
    {% if is_incremental() %}
    -- The bound lets the scan skip the files of older orders' events (a
    -- join's own filter does not reach the files); the list keeps the
    -- touched orders only.
    where order_id >= (select min(order_id) from touched)
      and order_id in (select order_id from touched)
    {% endif %}
    group by order_id
),

orders as (
    select order_id, channel, order_date, status, order_ts
    from {{ ref('orders_clean') }}
    {% if is_incremental() %}
    where order_id >= (select min(order_id) from touched)
      and order_id in (select order_id from touched)
    {% endif %}
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
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at,
    (select max(loaded_at) from {{ ref('order_events_clean') }}) as events_loaded_at
from timed
order by order_id
