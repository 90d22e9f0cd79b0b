-- Monthly revenue by the country the customer lives in (dim_customer),
-- beside ventes_geo's country the order ships to: orders, buyers, revenue,
-- and how much of it shipped abroad.
--
-- Incremental: only the months of the orders merged into fct_orders since
-- this table's watermark (`orders_loaded_at`) are recomputed, each in
-- full, and replace their rows. A customer's country never changes
-- (customers_clean only appends); a change to the countries seed needs
-- `--full-refresh` to reach the months already built.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='order_month') }}
{% if is_incremental() %}
with changed_months as (
    select distinct order_month
    from {{ ref('fct_orders') }}
    where orders_loaded_at > (select max(orders_loaded_at) from {{ this }})
)
{% endif %}

select
    o.order_month,
    c.country as customer_country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct o.customer_id) as customers,
    sum(o.revenue) as revenue,
    sum(case when o.ship_country <> c.country then o.revenue else 0 end) as revenue_shipped_abroad,
    (select max(orders_loaded_at) from {{ ref('fct_orders') }}) as orders_loaded_at
from {{ ref('fct_orders') }} o
join {{ ref('dim_customer') }} c on c.customer_id = o.customer_id
where o.is_revenue
{% if is_incremental() %}
    -- The bound lets the scan skip the files of older orders (fct_orders
    -- is stored in order_id order, so in time order).
    and o.order_month >= (select min(order_month) from changed_months)
    and o.order_month in (select order_month from changed_months)
{% endif %}
group by o.order_month, c.country, c.country_name, c.region
