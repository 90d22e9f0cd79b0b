-- One row per supplier. The list is small and sent once, so it is rebuilt
-- whole; a row sent twice is merged (`copies` counts the bronze rows it
-- stands for, so that bronze rows = sum(copies) + rows rejected), and
-- `unique` on supplier_id guards against two different rows of one
-- supplier, which no merge could settle.
select
    supplier_id,
    name,
    country,
    lead_time_days,
    count(*) as copies
from {{ ref('suppliers_validated') }}
where reject_reason is null
group by supplier_id, name, country, lead_time_days
