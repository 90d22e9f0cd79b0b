-- Lifetime values add up to the revenue of orders_clean, in customer_ltv
-- and in dim_customer, which takes them from it.
select relation, gold_revenue, orders_clean_revenue from ({{ revenue_mismatch(ref('customer_ltv'), 'lifetime_value') }}) a
union all
select relation, gold_revenue, orders_clean_revenue from ({{ revenue_mismatch(ref('dim_customer'), 'lifetime_value') }}) b
