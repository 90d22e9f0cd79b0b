{{ config(materialized='incremental', incremental_strategy='append',
          reject_reason_column='reject_reason') }}
-- The raw signup date stays so that the dirt is readable; names and emails
-- are already pseudonymised by customers_validated.
select
    customer_id,
    email_hash,
    initials,
    country,
    signup_date_raw,
    reject_reason
from {{ ref('customers_validated') }}
where reject_reason is not null
