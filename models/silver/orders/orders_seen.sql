{{ config(materialized='incremental', incremental_strategy='append') }}
-- Every order with at least one valid version in the feed, once: what order
-- lines are checked against (an orphan line's order has none). A table of
-- its own so that the lines' incremental builds need not read every order
-- file again: each bronze file is read once, its new orders appended.
select distinct order_id
from {{ ref('orders_validated') }}
where reject_reason is null
{% if is_incremental() %}
  and order_id not in (select order_id from {{ this }})
{% endif %}
