{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- Each bronze file is read once; its rejected lines are appended.
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    reject_reason
from {{ ref('order_items_validated') }}
where reject_reason is not null
