-- Monthly revenue by the country the customer lives in (dim_customer),
-- beside ventes_geo's country the order ships to: orders, buyers, revenue,
-- and how much of it shipped abroad.
select
    o.order_month,
    c.country as customer_country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct o.customer_id) as customers,
    sum(o.revenue) as revenue,
    sum(case when o.ship_country <> c.country then o.revenue else 0 end) as revenue_shipped_abroad
from {{ ref('fct_orders') }} o
join {{ ref('dim_customer') }} c on c.customer_id = o.customer_id
where o.is_revenue
group by o.order_month, c.country, c.country_name, c.region
