-- At each grain of average_order_value (day, month, all), revenue and
-- revenue orders add up to those of orders_clean, and the average is
-- revenue / orders.
with silver as (
    select count(*) as orders, round(sum(total_amount), 2) as revenue
    from {{ ref('orders_clean') }}
    where {{ is_revenue_order('status') }}
),

grains as (
    select period, sum(orders) as orders, round(sum(revenue), 2) as revenue,
           max(abs(average_order_value - revenue / orders)) as worst_average
    from {{ ref('average_order_value') }}
    group by period
)

select g.period, g.orders, s.orders as orders_clean_orders, g.revenue, s.revenue as orders_clean_revenue, g.worst_average
from grains g
cross join silver s
where g.orders <> s.orders or g.revenue <> s.revenue or g.worst_average > 0.005
union all
-- A grain with no row at all.
select p.period, null, null, null, null, null
from (select 'day' as period union all select 'month' union all select 'all') p
where p.period not in (select period from grains)
