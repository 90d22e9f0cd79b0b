-- models/silver/order_items/order_items_rejected.sql (incremental append; full build).
create or replace table silver_order_items_rejected as
select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    reject_reason
from order_items_validated
where reject_reason is not null;
