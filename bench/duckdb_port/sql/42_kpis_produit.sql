-- models/gold/kpis_produit.sql (table).
create or replace table gold_kpis_produit as
with sold as (
    select
        product_id,
        cast(sum(orders) as bigint) as orders,
        cast(sum(units) as bigint) as units,
        sum(revenue) as revenue
    from gold_product_days
    group by product_id
),

costed as (
    select
        p.product_id,
        p.name,
        p.category,
        coalesce(s.orders, 0) as orders,
        coalesce(s.units, 0) as units,
        coalesce(s.revenue, 0) as revenue,
        coalesce(s.units, 0) * p.cost as cost
    from silver_products_clean p
    left join sold s on s.product_id = p.product_id
)

select
    *,
    revenue - cost as margin,
    case when revenue > 0 then round(cast(revenue - cost as double) / cast(revenue as double), 4) end as margin_rate
from costed
order by revenue desc, product_id;
