{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_month') }}
-- Monthly sales per country the orders ship to (an order's own country,
-- which for 5% of orders is not the buyer's home country).
--
-- Incremental: only the months of the orders merged into orders_clean since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in full,
-- and replace their rows. A change to the countries seed needs
-- `--full-refresh` to reach the months already built.
select
    r.order_month,
    r.country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct r.customer_id) as customers,
    sum(r.revenue) as revenue,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from {{ ref('revenue_orders') }} r
left join {{ ref('countries') }} c on c.country_code = r.country
{% if is_incremental() %}
where {{ of_changed_orders('order_month', 'r.order_month') }}
{% endif %}
group by r.order_month, r.country, c.country_name, c.region
order by r.order_month, revenue desc
