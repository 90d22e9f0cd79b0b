-- models/silver/suppliers/suppliers_validated.sql (ephemeral: a view).
-- DataFusion's try_cast(varchar as bigint) reads only an optionally signed
-- run of digits; DuckDB's also reads ' 12' and rounds '1.5' to 2, so the
-- shape is checked first.
create or replace view suppliers_validated as
with typed as (
    select
        supplier_id,
        trim(name) as name,
        upper(trim(country)) as country,
        case
            when regexp_matches(trim(lead_time_days), '^[+-]?[0-9]+$')
                then try_cast(trim(lead_time_days) as bigint)
        end as lead_time_days,
        lead_time_days as lead_time_days_raw
    from bronze_suppliers
)

select
    *,
    case
        when lead_time_days is null or lead_time_days <= 0 then 'invalid_lead_time'
    end as reject_reason
from typed;
