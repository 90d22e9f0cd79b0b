-- The revenue lines of fct_order_lines add up to the revenue of orders_clean.
{{ revenue_mismatch(ref('fct_order_lines'), 'case when is_revenue then revenue end') }}
