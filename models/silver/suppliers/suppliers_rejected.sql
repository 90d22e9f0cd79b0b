{{ config(reject_reason_column='reject_reason') }}
-- Supplier rows no system can use, with the lead time as received.
select
    supplier_id,
    name,
    country,
    lead_time_days_raw,
    reject_reason
from {{ ref('suppliers_validated') }}
where reject_reason is not null
