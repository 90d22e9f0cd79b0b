{#
    The rows an entity's validation rejects: a test on the `reject_reason`
    column of its `*_validated` model, which holds every bronze row. With
    `warn_if: ">2%"` and `error_if: ">5%"` the thresholds read as reject
    rates of what arrived, and since everything clean is built on the
    validated rows, a failing rate stops the pipeline there.
#}
{% test reject_rate(model, column_name) %}
select * from {{ model }} where {{ column_name }} is not null
{% endtest %}
