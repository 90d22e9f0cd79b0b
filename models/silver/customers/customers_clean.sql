{{ config(materialized='incremental', incremental_strategy='append') }}
-- One row per customer, appended as their bronze file arrives (each file
-- is read once). A customer signs up once, so the feed has no versions to
-- merge; `unique` on customer_id guards that assumption.
select
    customer_id,
    email_hash,
    initials,
    country,
    signup_date
from {{ ref('customers_validated') }}
where reject_reason is null
