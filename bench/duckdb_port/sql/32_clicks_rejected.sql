-- models/silver/clicks/clicks_rejected.sql (incremental append; full build).
create or replace table silver_clicks_rejected as
select
    customer_id,
    page,
    channel,
    ip,
    ts,
    reject_reason
from clicks_validated
where reject_reason is not null;
