-- The suppliers, with their country's name and the number of products of
-- the catalogue each supplies.
select
    s.supplier_id,
    s.name as supplier_name,
    s.country,
    c.country_name,
    s.lead_time_days,
    coalesce(p.products, 0) as products
from {{ ref('suppliers_clean') }} s
left join {{ ref('countries') }} c on c.country_code = s.country
left join (
    select supplier_id, count(*) as products from {{ ref('products_clean') }} group by supplier_id
) p on p.supplier_id = s.supplier_id
