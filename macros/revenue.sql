{#
    The one revenue definition every gold model uses, so that their totals
    reconcile: an order counts unless it was cancelled (created, paid,
    shipped and delivered orders all count: the shop has taken them), and
    its revenue is the sum of its clean item lines, which is
    orders_clean.total_amount.
#}

{% macro is_revenue_order(status) -%}
{{ status }} <> 'cancelled'
{%- endmacro %}
