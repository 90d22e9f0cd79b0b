-- One row per order: the latest version by updated_at, typed and normalised.
with ranked as (
    select
        *,
        row_number() over (partition by order_id order by {{ parse_ts('updated_at') }} desc) as version_rank
    from {{ source('bronze', 'orders') }}
)
select
    order_id,
    customer_id,
    {{ parse_ts('order_ts') }} as order_ts,
    {{ normalize('status') }} as status,
    {{ normalize('channel') }} as channel,
    country,
    total_amount
from ranked
where version_rank = 1
  and {{ parse_ts('order_ts') }} is not null
  and {{ normalize('channel') }} in ('web', 'mobile', 'store')
