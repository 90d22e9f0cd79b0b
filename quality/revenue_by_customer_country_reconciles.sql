-- Revenue by the customer's country adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('revenue_by_customer_country')) }}
