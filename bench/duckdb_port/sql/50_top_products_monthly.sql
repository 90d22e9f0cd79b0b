-- models/gold/top_products_monthly.sql (table); top_10_products and
-- month_of expanded.
create or replace table gold_top_products_monthly as
with months as (
    select
        cast(date_trunc('month', order_date) as date) as order_month,
        product_id,
        cast(sum(orders) as bigint) as orders,
        cast(sum(units) as bigint) as units,
        sum(revenue) as revenue
    from gold_product_days
    group by 1, 2
)

select
    r.order_month,
    r.rank,
    r.product_id,
    p.name,
    p.category,
    r.orders,
    r.units,
    r.revenue,
    round(cast(r.revenue as double) / cast(r.period_revenue as double), 4) as share_of_month
from (
    select
        b.order_month,
        b.product_id,
        b.orders,
        b.units,
        b.revenue,
        row_number() over (partition by b.order_month order by b.revenue desc, b.product_id) as rank,
        sum(b.revenue) over (partition by b.order_month) as period_revenue
    from months b
) r
join silver_products_clean p on p.product_id = r.product_id
where r.rank <= 10;
