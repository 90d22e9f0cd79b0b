-- An order's total (as the feed gave it, or recomputed when missing) is the
-- sum of its clean lines: what lets gold count revenue from either side.
with items as (
    select order_id, sum(revenue) as items_total
    from {{ ref('order_items_clean') }}
    group by order_id
)

select
    o.order_id,
    o.total_amount,
    i.items_total
from {{ ref('orders_clean') }} o
left join items i on i.order_id = o.order_id
where round(o.total_amount, 2) is distinct from round(i.items_total, 2)
