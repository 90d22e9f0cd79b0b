-- The 10 best-selling products of each month of order creation, by
-- revenue at the price paid (ties by product id), over revenue orders,
-- with each product's share of the month's revenue.
with months as (
    select
        {{ month_of('order_date') }} as order_month,
        product_id,
        sum(orders) as orders,
        sum(units) as units,
        sum(revenue) as revenue
    from {{ ref('product_days') }}
    group by 1, 2
)

{{ top_10_products('months', 'order_month', 'share_of_month') }}
