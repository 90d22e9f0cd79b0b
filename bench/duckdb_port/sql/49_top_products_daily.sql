-- models/gold/top_products_daily.sql (table); top_10_products expanded.
create or replace table gold_top_products_daily as
select
    r.order_date,
    r.rank,
    r.product_id,
    p.name,
    p.category,
    r.orders,
    r.units,
    r.revenue,
    round(cast(r.revenue as double) / cast(r.period_revenue as double), 4) as share_of_day
from (
    select
        b.order_date,
        b.product_id,
        b.orders,
        b.units,
        b.revenue,
        row_number() over (partition by b.order_date order by b.revenue desc, b.product_id) as rank,
        sum(b.revenue) over (partition by b.order_date) as period_revenue
    from gold_product_days b
) r
join silver_products_clean p on p.product_id = r.product_id
where r.rank <= 10;
