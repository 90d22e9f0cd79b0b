-- ventes_geo's revenue adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('ventes_geo')) }}
