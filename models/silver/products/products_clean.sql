-- The catalogue. Each product is written once, on the day it is added,
-- and the feed carries no update time: were a product re-sent, nothing in
-- the row would say which copy is newer, so `unique` on product_id guards
-- that instead of a silent pick.
select
    product_id,
    trim(name) as name,
    trim(category) as category,
    unit_price,
    cost,
    supplier_id,
    cast(round(cast((unit_price - cost) / unit_price as double), 4) as double) as list_margin_rate
from {{ source('bronze', 'products') }}
