-- fct_orders holds every order of orders_clean once, and its revenue adds
-- up to the revenue of orders_clean.
select 'orders' as measure, (select count(*) from {{ ref('fct_orders') }}) as star, (select count(*) from {{ ref('orders_clean') }}) as silver
where (select count(*) from {{ ref('fct_orders') }}) <> (select count(*) from {{ ref('orders_clean') }})
union all
select 'revenue', gold_revenue, orders_clean_revenue from ({{ revenue_mismatch(ref('fct_orders')) }}) m
