-- models/gold/star/dim_supplier.sql (table).
create or replace table gold_dim_supplier as
select
    s.supplier_id,
    s.name as supplier_name,
    s.country,
    c.country_name,
    s.lead_time_days,
    coalesce(p.products, 0) as products
from silver_suppliers_clean s
left join reference_countries c on c.country_code = s.country
left join (
    select supplier_id, count(*) as products from silver_products_clean group by supplier_id
) p on p.supplier_id = s.supplier_id;
