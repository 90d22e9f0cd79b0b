-- models/gold/ventes_geo.sql (incremental delete+insert by order_month;
-- full build).
create or replace table gold_ventes_geo as
select
    r.order_month,
    r.country,
    c.country_name,
    c.region,
    count(*) as orders,
    count(distinct r.customer_id) as customers,
    sum(r.revenue) as revenue,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from revenue_orders r
left join reference_countries c on c.country_code = r.country
group by r.order_month, r.country, c.country_name, c.region
order by r.order_month, revenue desc;
