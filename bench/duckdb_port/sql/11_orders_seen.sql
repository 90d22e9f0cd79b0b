-- models/silver/orders/orders_seen.sql (incremental append; full build).
create or replace table silver_orders_seen as
select distinct order_id
from orders_validated
where reject_reason is null;
