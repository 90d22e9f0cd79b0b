-- models/silver/suppliers/suppliers_rejected.sql (table).
create or replace table silver_suppliers_rejected as
select
    supplier_id,
    name,
    country,
    lead_time_days_raw,
    reject_reason
from suppliers_validated
where reject_reason is not null;
