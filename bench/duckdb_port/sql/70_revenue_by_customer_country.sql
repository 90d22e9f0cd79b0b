-- models/gold/revenue_by_customer_country.sql (table).
create or replace table gold_revenue_by_customer_country as
select
    o.order_month,
    c.country as customer_country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct o.customer_id) as customers,
    sum(o.revenue) as revenue,
    sum(case when o.ship_country <> c.country then o.revenue else 0 end) as revenue_shipped_abroad
from gold_fct_orders o
join gold_dim_customer c on c.customer_id = o.customer_id
where o.is_revenue
group by o.order_month, c.country, c.country_name, c.region;
