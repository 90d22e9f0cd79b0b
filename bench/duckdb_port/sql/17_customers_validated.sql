-- models/silver/customers/customers_validated.sql (ephemeral: a view).
-- email_hash expanded: DataFusion's encode(sha256(x), 'hex') is DuckDB's
-- sha256(x), already lower-case hex. parse_date expanded: DataFusion's
-- regexp_like is DuckDB's regexp_matches (both search; the patterns are
-- anchored), and regexp_replace's back-references are \1 in both (etl
-- renders them for Rust's regex).
create or replace view customers_validated as
with typed as (
    select
        customer_id,
        left(sha256(nullif(lower(trim(email)), '')), 16) as email_hash,
        nullif(upper(concat(left(trim(first_name), 1), left(trim(last_name), 1))), '') as initials,
        upper(trim(country)) as country,
        case
            when regexp_matches(trim(signup_date), '^\d{4}-\d{2}-\d{2}$')
                then try_cast(trim(signup_date) as date)
            when regexp_matches(trim(signup_date), '^\d{2}/\d{2}/\d{4}$')
                then try_cast(regexp_replace(trim(signup_date), '^(\d{2})/(\d{2})/(\d{4})$', '\3-\2-\1') as date)
            when regexp_matches(trim(signup_date), '^\d{4}/\d{2}/\d{2}$')
                then try_cast(replace(trim(signup_date), '/', '-') as date)
            when regexp_matches(trim(signup_date), '^\d{8}$')
                then try_cast(regexp_replace(trim(signup_date), '^(\d{4})(\d{2})(\d{2})$', '\1-\2-\3') as date)
        end as signup_date,
        signup_date as signup_date_raw
    from bronze_customers
)

select
    *,
    case
        when email_hash is null then 'missing_email'
        when signup_date is null then 'invalid_signup_date'
    end as reject_reason
from typed;
