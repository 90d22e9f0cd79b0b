{{ config(materialized='incremental', incremental_strategy='append') }}
-- The valid order lines, appended as their bronze file arrives (each file
-- is read once); revenue = quantity * unit_price, the price paid.
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    revenue
from {{ ref('order_items_validated') }}
where reject_reason is null
