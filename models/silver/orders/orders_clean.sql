-- One row per order: its latest valid version by updated_at. Exact copies
-- of a version are merged too; `versions` counts the bronze rows merged so
-- that bronze rows = sum(versions) + rows in orders_rejected.
with valid as (
    select *
    from {{ ref('orders_validated') }}
    where reject_reason is null
),

ranked as (
    select
        *,
        row_number() over (partition by order_id order by updated_at desc) as recency,
        count(*) over (partition by order_id) as versions
    from valid
),

-- A version's total can be null; the order's clean lines are what it sums.
item_totals as (
    select order_id, sum(revenue) as items_total
    from {{ ref('order_items_clean') }}
    group by order_id
)

select
    r.order_id,
    r.customer_id,
    r.order_ts,
    cast(r.order_ts as date) as order_date,
    r.updated_at,
    r.status,
    r.channel,
    r.country,
    coalesce(r.total_amount, t.items_total) as total_amount,
    r.total_amount is null as total_from_items,
    r.versions
from ranked r
left join item_totals t on t.order_id = r.order_id
where r.recency = 1
