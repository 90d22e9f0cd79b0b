-- sales_by_day's revenue adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('sales_by_day')) }}
