-- Monthly sales per country the orders ship to (an order's own country,
-- which for 5% of orders is not the buyer's home country).
select
    r.order_month,
    r.country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct r.customer_id) as customers,
    sum(r.revenue) as revenue
from {{ ref('revenue_orders') }} r
left join {{ ref('countries') }} c on c.country_code = r.country
group by r.order_month, r.country, c.country_name, c.region
order by r.order_month, revenue desc
