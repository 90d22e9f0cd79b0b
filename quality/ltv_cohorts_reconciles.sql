-- ltv_cohorts's revenue adds up to the revenue of orders_clean.
{{ revenue_mismatch(ref('ltv_cohorts')) }}
