-- Daily sales, by the UTC day the order was created.
select
    order_date,
    count(*) as orders,
    count(distinct customer_id) as customers,
    sum(units) as units,
    sum(revenue) as revenue,
    cast(round(sum(revenue) / count(*), 2) as decimal(12, 2)) as average_basket
from {{ ref('revenue_orders') }}
group by order_date
order by order_date
