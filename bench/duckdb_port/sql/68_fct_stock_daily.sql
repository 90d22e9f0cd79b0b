-- models/gold/star/fct_stock_daily.sql (incremental insert_overwrite by
-- snapshot_date; full build).
create or replace table gold_fct_stock_daily as
with days as (
    select distinct snapshot_date
    from silver_stock_clean
)

select
    s.snapshot_date,
    s.product_id,
    p.supplier_id,
    s.on_hand,
    s.on_hand = 0 as is_out_of_stock,
    cast(s.on_hand * p.cost as decimal(14, 2)) as stock_value,
    coalesce(d.units, 0) as units_sold,
    (select max(loaded_at) from silver_stock_clean) as stock_loaded_at,
    (select max(orders_loaded_at) from gold_product_days) as orders_loaded_at
from silver_stock_clean s
join days on days.snapshot_date = s.snapshot_date
left join silver_products_clean p on p.product_id = s.product_id
left join gold_product_days d on d.order_date = s.snapshot_date and d.product_id = s.product_id;
