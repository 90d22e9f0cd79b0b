-- models/silver/order_items/order_items_validated.sql (ephemeral: a view).
create or replace view order_items_validated as
with valid_orders as (
    select order_id
    from silver_orders_seen
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
    from bronze_order_items i
    left join valid_orders o on o.order_id = i.order_id
)

select
    *,
    case
        when coalesce(quantity, 0) <= 0 then 'non_positive_quantity'
        when unit_price is null then 'missing_unit_price'
        when not has_order then 'orphan_order_id'
    end as reject_reason
from typed;
