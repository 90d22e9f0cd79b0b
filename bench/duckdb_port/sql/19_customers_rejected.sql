-- models/silver/customers/customers_rejected.sql (incremental append; full build).
create or replace table silver_customers_rejected as
select
    customer_id,
    email_hash,
    initials,
    country,
    signup_date_raw,
    reject_reason
from customers_validated
where reject_reason is not null;
