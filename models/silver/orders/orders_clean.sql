{{ config(materialized='incremental', unique_key='order_id', target_file_size='8MiB', on_schema_change='fail') }}
-- One row per order: its latest valid version by updated_at. Exact copies
-- of a version are merged too; `versions` counts the bronze rows merged so
-- that bronze rows = sum(versions) + rows in orders_rejected.
--
-- Incremental: etl reads only the bronze files no earlier build consumed
-- (orders_validated's source is cut to them). Their versions meet the
-- stored row of the same orders, the newest wins, and the result is merged
-- on order_id. `loaded_at` tells the gold models which orders changed.
with valid as (
    select order_id, customer_id, order_ts, updated_at, status, channel, country, total_amount
    from {{ ref('orders_validated') }}
    where reject_reason is null
),

-- A version's total can be null; the order's clean lines are what it sums.
item_totals as (
    select order_id, sum(revenue) as items_total
    from {{ ref('order_items_clean') }}
    {% if is_incremental() %}
    where order_id in (select order_id from valid)
    {% endif %}
    group by order_id
),

candidates as (
    select
        v.order_id,
        v.customer_id,
        v.order_ts,
        v.updated_at,
        v.status,
        v.channel,
        v.country,
        coalesce(v.total_amount, t.items_total) as total_amount,
        v.total_amount is null as total_from_items,
        cast(1 as bigint) as versions
    from valid v
    left join item_totals t on t.order_id = v.order_id
    {% if is_incremental() %}
    union all
    -- The stored row of each order with new versions, standing for the
    -- versions merged before.
    select order_id, customer_id, order_ts, updated_at, status, channel, country,
           total_amount, total_from_items, versions
    from {{ this }}
    where order_id in (select order_id from valid)
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (partition by order_id order by updated_at desc, versions desc) as recency,
        sum(versions) over (partition by order_id) as merged_versions
    from candidates
)

select
    order_id,
    customer_id,
    order_ts,
    cast(order_ts as date) as order_date,
    -- Stored rather than derived in gold: date_trunc costs more than
    -- reading the column back, and every gold model groups by month.
    {{ month_of('order_ts') }} as order_month,
    updated_at,
    status,
    channel,
    country,
    total_amount,
    total_from_items,
    merged_versions as versions,
    {{ loaded_at() }} as loaded_at
from ranked
where recency = 1
