{{ config(reject_reason_column='reject_reason') }}
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    reject_reason
from {{ ref('order_items_validated') }}
where reject_reason is not null
