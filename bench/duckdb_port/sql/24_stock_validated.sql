-- models/silver/stock/stock_validated.sql (ephemeral: a view); parse_date
-- expanded as in customers_validated.
create or replace view stock_validated as
with typed as (
    select
        case
            when regexp_matches(trim(s.snapshot_date), '^\d{4}-\d{2}-\d{2}$')
                then try_cast(trim(s.snapshot_date) as date)
            when regexp_matches(trim(s.snapshot_date), '^\d{2}/\d{2}/\d{4}$')
                then try_cast(regexp_replace(trim(s.snapshot_date), '^(\d{2})/(\d{2})/(\d{4})$', '\3-\2-\1') as date)
            when regexp_matches(trim(s.snapshot_date), '^\d{4}/\d{2}/\d{2}$')
                then try_cast(replace(trim(s.snapshot_date), '/', '-') as date)
            when regexp_matches(trim(s.snapshot_date), '^\d{8}$')
                then try_cast(regexp_replace(trim(s.snapshot_date), '^(\d{4})(\d{2})(\d{2})$', '\1-\2-\3') as date)
        end as snapshot_date,
        s.snapshot_date as snapshot_date_raw,
        s.product_id,
        s.on_hand,
        p.product_id is not null as on_catalogue
    from bronze_stock s
    left join (select distinct product_id from silver_products_clean) p
        on p.product_id = s.product_id
)

select
    snapshot_date,
    snapshot_date_raw,
    product_id,
    on_hand,
    case
        when snapshot_date is null then 'invalid_snapshot_date'
        when on_hand is null or on_hand < 0 then 'negative_on_hand'
        when not on_catalogue then 'unknown_product'
    end as reject_reason
from typed;
