{{ config(materialized='incremental', incremental_strategy='append', target_file_size='8MiB') }}
-- One row per product and day: the end-of-day stock, appended as the day's
-- bronze file arrives (each file is read once). A row sent twice is merged
-- (`copies` counts the bronze rows it stands for, so that bronze rows =
-- sum(copies) + rows rejected); `unique_combination_of_columns` guards
-- against two different counts of one product on one day.
select
    snapshot_date,
    product_id,
    on_hand,
    count(*) as copies,
    {{ loaded_at() }} as loaded_at
from {{ ref('stock_validated') }}
where reject_reason is null
group by snapshot_date, product_id, on_hand
