-- models/silver/customers/customers_clean.sql (incremental append; full build).
create or replace table silver_customers_clean as
select
    customer_id,
    email_hash,
    initials,
    country,
    signup_date
from customers_validated
where reject_reason is null;
