{#- When this build started (UTC): the `loaded_at` of the rows it writes,
    which incremental models downstream compare with their watermark. -#}
{% macro loaded_at() -%}
arrow_cast('{{ run_started_at.strftime("%Y-%m-%dT%H:%M:%S%.6f") }}', 'Timestamp(Microsecond, Some("UTC"))')
{%- endmacro %}

{#- For the gold models that recompute only what changed: keeps the rows
    whose `column` (a day, a month of orders_clean) is one of the orders
    merged into orders_clean since this table's watermark
    (`orders_loaded_at`). The bound lets the scan skip the files of older
    values (orders_clean is stored in order_id order, so in time order);
    the list leaves out the values between that did not change. distinct:
    DataFusion's semi join walks every duplicate key of its build side, and
    a day has tens of thousands of orders. `expression` is the column as
    the model names it (`r.order_month`), by default `column`. -#}
{% macro of_changed_orders(column, expression=none) -%}
{%- set expression = expression or column -%}
{%- set changed -%}
from {{ ref('orders_clean') }} where loaded_at > (select max(orders_loaded_at) from {{ this }})
{%- endset -%}
{{ expression }} >= (select min({{ column }}) {{ changed }})
    and {{ expression }} in (select distinct {{ column }} {{ changed }})
{%- endmacro %}
