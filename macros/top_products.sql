{#
    The 10 best-selling products of each `period` (a column of `relation`,
    which holds per period and product `orders`, `units` and `revenue`):
    ranked by revenue, ties by product id, with the product's name and
    category and its share of the period's revenue as `share`.
#}

{% macro top_10_products(relation, period, share) -%}
select
    r.{{ period }},
    r.rank,
    r.product_id,
    p.name,
    p.category,
    r.orders,
    r.units,
    r.revenue,
    round(cast(r.revenue as double) / cast(r.period_revenue as double), 4) as {{ share }}
from (
    select
        b.{{ period }},
        b.product_id,
        b.orders,
        b.units,
        b.revenue,
        row_number() over (partition by b.{{ period }} order by b.revenue desc, b.product_id) as rank,
        sum(b.revenue) over (partition by b.{{ period }}) as period_revenue
    from {{ relation }} b
) r
join {{ ref('products_clean') }} p on p.product_id = r.product_id
where r.rank <= 10
{%- endmacro %}
