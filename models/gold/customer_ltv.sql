{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer_id') }}
-- Per customer who ever ordered: first and last revenue order, the month
-- of the first (their cohort), revenue orders, lifetime value (the revenue
-- of all their orders), average order value and a segment:
--   vip        lifetime value of 1,000 EUR or more
--   loyal      4 revenue orders or more
--   repeat     2 or 3 revenue orders
--   one_time   1 revenue order
--   no_revenue every order cancelled
--
-- Incremental: only the customers of orders merged into orders_clean
-- since this table's watermark (`orders_loaded_at`) are recomputed, over
-- all their orders, and merged on customer_id.
with orders as (
    select customer_id, order_date, status, total_amount
    from {{ ref('orders_clean') }}
    {% if is_incremental() %}
    where customer_id in (
        select distinct customer_id from {{ ref('orders_clean') }}
        where loaded_at > (select max(orders_loaded_at) from {{ this }})
    )
    {% endif %}
),

per_customer as (
    select
        customer_id,
        count(*) as orders,
        count(*) filter (where {{ is_revenue_order('status') }}) as revenue_orders,
        min(order_date) filter (where {{ is_revenue_order('status') }}) as first_order_date,
        max(order_date) filter (where {{ is_revenue_order('status') }}) as last_order_date,
        coalesce(sum(total_amount) filter (where {{ is_revenue_order('status') }}), 0) as lifetime_value
    from orders
    group by customer_id
)

select
    customer_id,
    orders,
    revenue_orders,
    first_order_date,
    {{ month_of('first_order_date') }} as cohort_month,
    last_order_date,
    lifetime_value,
    cast(case when revenue_orders > 0 then round(lifetime_value / revenue_orders, 2) end as decimal(12, 2)) as average_order_value,
    case
        when revenue_orders = 0 then 'no_revenue'
        when lifetime_value >= 1000 then 'vip'
        when revenue_orders >= 4 then 'loyal'
        when revenue_orders >= 2 then 'repeat'
        else 'one_time'
    end as segment,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from per_customer
