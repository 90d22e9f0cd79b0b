-- The valid order lines; revenue = quantity * unit_price, the price paid.
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    revenue
from {{ ref('order_items_validated') }}
where reject_reason is null
