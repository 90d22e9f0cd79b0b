-- models/gold/star/dim_product.sql (table).
create or replace table gold_dim_product as
select
    p.product_id,
    p.name,
    p.category,
    p.unit_price,
    p.cost,
    p.list_margin_rate,
    p.supplier_id,
    s.name as supplier_name,
    s.country as supplier_country,
    s.lead_time_days
from silver_products_clean p
left join silver_suppliers_clean s on s.supplier_id = p.supplier_id;
