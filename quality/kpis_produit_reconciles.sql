-- kpis_produit's revenue adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('kpis_produit')) }}
