{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by='snapshot_date') }}
-- One row per product and day of the warehouse's snapshots: units on
-- hand at the end of the day, whether the product was out of stock, the
-- stock's value at the catalogue's unit cost, and the units sold that day
-- (revenue orders created that day, from product_days).
--
-- Incremental: the days of snapshots appended to stock_clean since this
-- table's watermark (`stock_loaded_at`), and the days product_days has
-- recomputed since (`orders_loaded_at`: a late cancellation changes a
-- day's units sold), are recomputed in full and replace their partitions.
with days as (
    select distinct snapshot_date
    from {{ ref('stock_clean') }}
    {% if is_incremental() %}
    where loaded_at > (select max(stock_loaded_at) from {{ this }})
       or snapshot_date in (
           select order_date from {{ ref('product_days') }}
           where orders_loaded_at > (select max(orders_loaded_at) from {{ this }})
       )
    {% endif %}
)

select
    s.snapshot_date,
    s.product_id,
    p.supplier_id,
    s.on_hand,
    s.on_hand = 0 as is_out_of_stock,
    cast(s.on_hand * p.cost as decimal(14, 2)) as stock_value,
    coalesce(d.units, 0) as units_sold,
    (select max(loaded_at) from {{ ref('stock_clean') }}) as stock_loaded_at,
    (select max(orders_loaded_at) from {{ ref('product_days') }}) as orders_loaded_at
from {{ ref('stock_clean') }} s
join days on days.snapshot_date = s.snapshot_date
left join {{ ref('products_clean') }} p on p.product_id = s.product_id
left join {{ ref('product_days') }} d on d.order_date = s.snapshot_date and d.product_id = s.product_id
