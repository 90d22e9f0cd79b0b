{{ config(materialized='incremental', incremental_strategy='append') }}
-- Valid page views, appended as their bronze file arrives (each file is
-- read once). The IP address was only needed to validate the row;
-- it is personal data, so it goes no further.
select
    customer_id,
    customer_id is null as is_anonymous,
    page,
    ts
from {{ ref('clicks_validated') }}
where reject_reason is null
