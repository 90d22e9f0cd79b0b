-- models/silver/products/products_clean.sql (table).
-- list_margin_rate: DataFusion divides decimal(13,2) by decimal(12,2) into
-- a decimal(19,6), truncated at 6 digits, then casts it to double and
-- rounds to 4 digits; DuckDB divides decimals in double. The quotient is
-- computed as DataFusion does, in integers (cents * 10^6 // cents, which
-- truncates toward zero as DataFusion does), so that a value on a
-- rounding boundary rounds the same way.
create or replace table silver_products_clean as
select
    product_id,
    trim(name) as name,
    trim(category) as category,
    unit_price,
    cost,
    supplier_id,
    round(
        cast(cast((unit_price - cost) * 100 as hugeint) * 1000000 // cast(unit_price * 100 as hugeint) as double)
            / 1000000,
        4
    ) as list_margin_rate
from bronze_products;
