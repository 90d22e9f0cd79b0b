-- models/silver/stock/stock_clean.sql (incremental append; full build).
create or replace table silver_stock_clean as
select
    snapshot_date,
    product_id,
    on_hand,
    count(*) as copies,
    current_timestamp as loaded_at
from stock_validated
where reject_reason is null
group by snapshot_date, product_id, on_hand;
