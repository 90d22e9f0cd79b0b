-- One row per customer, pseudonymised as in silver (an email hash and
-- initials, never a name or an email), with their country, their
-- acquisition cohort (the month of their first revenue order) and their
-- current segment from customer_ltv. A customer who never ordered is a
-- `prospect`.
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
    coalesce(l.segment, 'prospect') as segment
from {{ ref('customers_clean') }} c
left join {{ ref('countries') }} k on k.country_code = c.country
left join {{ ref('customer_ltv') }} l on l.customer_id = c.customer_id
