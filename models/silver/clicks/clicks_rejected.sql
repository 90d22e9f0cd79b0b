{{ config(reject_reason_column='reject_reason') }}
-- The malformed IP is kept: it is the evidence of the reject.
select
    customer_id,
    page,
    ip,
    ts,
    reject_reason
from {{ ref('clicks_validated') }}
where reject_reason is not null
