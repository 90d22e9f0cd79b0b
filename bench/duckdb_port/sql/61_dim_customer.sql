-- models/gold/star/dim_customer.sql (table).
create or replace table gold_dim_customer as
select
    c.customer_id,
    c.email_hash,
    c.initials,
    c.country,
    k.country_name,
    k.region,
    c.signup_date,
    cast(date_trunc('month', c.signup_date) as date) as signup_month,
    l.first_order_date,
    l.cohort_month,
    l.last_order_date,
    coalesce(l.revenue_orders, 0) as revenue_orders,
    coalesce(l.lifetime_value, 0) as lifetime_value,
    coalesce(l.segment, 'prospect') as segment
from silver_customers_clean c
left join reference_countries k on k.country_code = c.country
left join gold_customer_ltv l on l.customer_id = c.customer_id;
