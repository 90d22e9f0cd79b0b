-- Premium products: in the top decile of products by revenue (among those
-- that sold) AND with a realised margin rate above the median list margin
-- rate of the whole catalogue. Big sellers that earn little per euro, and
-- high-margin products nobody buys, are both left out.
with catalogue as (
    select median(list_margin_rate) as median_margin_rate
    from {{ ref('products_clean') }}
),

ranked as (
    select
        *,
        ntile(10) over (order by revenue desc, product_id) as revenue_decile,
        rank() over (order by revenue desc, product_id) as revenue_rank
    from {{ ref('kpis_produit') }}
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
order by r.revenue desc, r.product_id
