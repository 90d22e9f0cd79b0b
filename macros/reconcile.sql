{#
    For the singular reconciliation tests under quality/: a gold table's
    revenue must add up to the revenue of orders_clean under the one
    definition (macros/revenue.sql). Compared in cents, so that a sum taken
    in another order cannot fail the test; a row comes back only when the
    two totals differ.
#}
{% macro revenue_mismatch(relation, column='revenue') -%}
with gold as (
    select round(sum({{ column }}), 2) as revenue from {{ relation }}
),

silver as (
    select round(sum(total_amount), 2) as revenue
    from {{ ref('orders_clean') }}
    where {{ is_revenue_order('status') }}
)

select
    '{{ relation }}' as relation,
    g.revenue as gold_revenue,
    s.revenue as orders_clean_revenue
from gold g
cross join silver s
where g.revenue is distinct from s.revenue
{%- endmacro %}
