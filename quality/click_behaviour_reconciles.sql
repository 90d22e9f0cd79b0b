-- click_behaviour's orders and revenue add up to the revenue orders of
-- orders_clean (the shops' too), and its page views to clicks_clean.
with behaviour as (
    select sum(orders) as orders, round(sum(revenue), 2) as revenue, sum(page_views) as page_views
    from {{ ref('click_behaviour') }}
),

silver as (
    select
        (select count(*) from {{ ref('orders_clean') }} where {{ is_revenue_order('status') }}) as orders,
        (select round(sum(total_amount), 2) from {{ ref('orders_clean') }} where {{ is_revenue_order('status') }}) as revenue,
        (select count(*) from {{ ref('clicks_clean') }}) as page_views
)

select b.*, s.orders as silver_orders, s.revenue as silver_revenue, s.page_views as silver_page_views
from behaviour b
cross join silver s
where b.orders <> s.orders or b.revenue <> s.revenue or b.page_views <> s.page_views
