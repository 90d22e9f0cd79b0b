-- The 10 best-selling products of each UTC day of order creation, by
-- revenue at the price paid (ties by product id), over revenue orders,
-- with each product's share of the day's revenue.
{{ top_10_products(ref('product_days'), 'order_date', 'share_of_day') }}
