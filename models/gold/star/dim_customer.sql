-- One row per customer, pseudonymised as in silver (an email hash and
-- initials, never a name or an email), with their country, their
-- acquisition cohort (the month of their first revenue order) and their
-- current segment from customer_ltv. A customer who never ordered is a
-- `prospect`.
--
-- Incremental: the customers new in customers_clean (which only ever
-- appends: a customer signs up once) and those customer_ltv recomputed
-- since this table's watermark (`orders_loaded_at`) are merged on
-- customer_id. A change to the countries seed needs `--full-refresh` to
-- reach the customers already built.
{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer_id') }}
{% if is_incremental() %}
with changed as (
    select customer_id
    from {{ ref('customer_ltv') }}
    where orders_loaded_at > (select max(orders_loaded_at) from {{ this }})
    union
    select n.customer_id
    from {{ ref('customers_clean') }} n
    left join {{ this }} d on d.customer_id = n.customer_id
    where d.customer_id is null
),
{% else %}
with
{% endif %}

customers as (
    select customer_id, email_hash, initials, country, signup_date
    from {{ ref('customers_clean') }}
    {% if is_incremental() %}
    -- Before the joins: their hash tables then hold the changed
    -- customers, not all of them.
    where customer_id in (select customer_id from changed)
    {% endif %}
)

select
    c.customer_id,
    c.email_hash,
    c.initials,
    c.country,
    k.country_name,
    k.region,
    c.signup_date,
    {{ month_of('c.signup_date') }} as signup_month,
    l.first_order_date,
    l.cohort_month,
    l.last_order_date,
    coalesce(l.revenue_orders, 0) as revenue_orders,
    coalesce(l.lifetime_value, 0) as lifetime_value,
    coalesce(l.segment, 'prospect') as segment,
    (select max(orders_loaded_at) from {{ ref('customer_ltv') }}) as orders_loaded_at
from customers c
left join {{ ref('countries') }} k on k.country_code = c.country
left join {{ ref('customer_ltv') }} l on l.customer_id = c.customer_id
