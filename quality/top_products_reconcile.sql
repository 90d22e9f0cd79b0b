-- Each day's and month's top 10 are the 10 products with the most revenue
-- computed straight from orders_clean and its clean lines (ties by
-- product id), with that revenue: a row per rank that differs.
with lines as (
    select o.order_date, {{ month_of('o.order_date') }} as order_month, i.product_id, i.revenue
    from {{ ref('orders_clean') }} o
    join {{ ref('order_items_clean') }} i on i.order_id = o.order_id
    where {{ is_revenue_order('o.status') }}
),

daily as (
    select order_date, product_id, sum(revenue) as revenue,
           row_number() over (partition by order_date order by sum(revenue) desc, product_id) as rank
    from lines
    group by order_date, product_id
),

monthly as (
    select order_month, product_id, sum(revenue) as revenue,
           row_number() over (partition by order_month order by sum(revenue) desc, product_id) as rank
    from lines
    group by order_month, product_id
)

select 'day' as grain, coalesce(e.order_date, t.order_date) as period, coalesce(e.rank, t.rank) as rank,
       e.product_id as expected_product, t.product_id as gold_product, e.revenue as expected_revenue, t.revenue as gold_revenue
from (select * from daily where rank <= 10) e
full outer join {{ ref('top_products_daily') }} t on t.order_date = e.order_date and t.rank = e.rank
where (e.product_id is distinct from t.product_id) or (e.revenue is distinct from t.revenue)
union all
select 'month', coalesce(e.order_month, t.order_month), coalesce(e.rank, t.rank),
       e.product_id, t.product_id, e.revenue, t.revenue
from (select * from monthly where rank <= 10) e
full outer join {{ ref('top_products_monthly') }} t on t.order_month = e.order_month and t.rank = e.rank
where (e.product_id is distinct from t.product_id) or (e.revenue is distinct from t.revenue)
