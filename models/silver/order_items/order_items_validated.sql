{{ config(materialized='ephemeral') }}
-- Every bronze order line, typed, with the reason it is rejected (null when
-- valid). An orphan is a line whose order has no valid version anywhere in
-- the feed (orders_seen; not orders_clean, which recomputes missing totals
-- from these lines).
with valid_orders as (
    select order_id
    from {{ ref('orders_seen') }}
),

typed as (
    select
        i.order_id,
        i.line_no,
        i.product_id,
        i.quantity,
        i.unit_price,
        i.quantity * i.unit_price as revenue,
        o.order_id is not null as has_order
    from {{ source('bronze', 'order_items') }} i
    left join valid_orders o on o.order_id = i.order_id
)

select
    *,
    {{ reject_reason([
        ['non_positive_quantity', "coalesce(quantity, 0) <= 0"],
        ['missing_unit_price', "unit_price is null"],
        ['orphan_order_id', "not has_order"],
    ]) }} as reject_reason
from typed
