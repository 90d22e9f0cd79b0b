-- models/gold/produits_premium.sql (table).
create or replace table gold_produits_premium as
with catalogue as (
    select median(list_margin_rate) as median_margin_rate
    from silver_products_clean
),

ranked as (
    select
        *,
        ntile(10) over (order by revenue desc, product_id) as revenue_decile,
        rank() over (order by revenue desc, product_id) as revenue_rank
    from gold_kpis_produit
    where revenue > 0
)

select
    r.product_id,
    r.name,
    r.category,
    r.revenue_rank,
    r.orders,
    r.units,
    r.revenue,
    r.margin,
    r.margin_rate,
    c.median_margin_rate as catalogue_median_margin_rate
from ranked r
cross join catalogue c
where r.revenue_decile = 1
  and r.margin_rate > c.median_margin_rate
order by r.revenue desc, r.product_id;
