-- models/silver/stock/stock_rejected.sql (incremental append; full build).
create or replace table silver_stock_rejected as
select
    snapshot_date_raw,
    product_id,
    on_hand,
    reject_reason
from stock_validated
where reject_reason is not null;
