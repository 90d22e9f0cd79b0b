-- models/silver/clicks/clicks_clean.sql (incremental append; full build).
create or replace table silver_clicks_clean as
select
    customer_id,
    customer_id is null as is_anonymous,
    case
        when customer_id is not null then concat('c', cast(customer_id as varchar))
        else concat('a', left(sha256(ip), 16))
    end as visitor_id,
    page,
    channel,
    ts,
    current_timestamp as loaded_at
from clicks_validated
where reject_reason is null;
