{{ config(materialized='ephemeral') }}
-- Every bronze stock row, typed, with the reason it is rejected (null when
-- valid): a day that does not parse, a negative count, or a product the
-- catalogue does not have.
with typed as (
    select
        {{ parse_date('s.snapshot_date') }} as snapshot_date,
        s.snapshot_date as snapshot_date_raw,
        s.product_id,
        s.on_hand,
        p.product_id is not null as on_catalogue
    from {{ source('bronze', 'stock') }} s
    -- A join rather than `not in (subquery)`, which DataFusion does not
    -- run inside a CASE.
    left join (select distinct product_id from {{ ref('products_clean') }}) p
        on p.product_id = s.product_id
)

select
    snapshot_date,
    snapshot_date_raw,
    product_id,
    on_hand,
    {{ reject_reason([
        ['invalid_snapshot_date', "snapshot_date is null"],
        ['negative_on_hand', "on_hand is null or on_hand < 0"],
        ['unknown_product', "not on_catalogue"],
    ]) }} as reject_reason
from typed
