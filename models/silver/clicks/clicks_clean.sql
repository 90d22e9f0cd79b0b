{{ config(materialized='incremental', incremental_strategy='append') }}
-- Valid page views, appended as their bronze file arrives (each file is
-- read once). The IP address is personal data and goes no further: an
-- anonymous visitor is known by a pseudonym of it instead (`visitor_id`,
-- as a logged-in one by their customer id), so that their page views can
-- still be grouped into sessions.
select
    customer_id,
    customer_id is null as is_anonymous,
    case
        when customer_id is not null then concat('c', cast(customer_id as varchar))
        else concat('a', left(encode(sha256(ip), 'hex'), 16))
    end as visitor_id,
    page,
    channel,
    ts,
    {{ loaded_at() }} as loaded_at
from {{ ref('clicks_validated') }}
where reject_reason is null
