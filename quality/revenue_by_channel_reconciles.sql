-- revenue_by_channel's revenue adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('revenue_by_channel')) }}
