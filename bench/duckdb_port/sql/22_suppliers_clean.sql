-- models/silver/suppliers/suppliers_clean.sql (table).
create or replace table silver_suppliers_clean as
select
    supplier_id,
    name,
    country,
    lead_time_days,
    count(*) as copies
from suppliers_validated
where reject_reason is null
group by supplier_id, name, country, lead_time_days;
