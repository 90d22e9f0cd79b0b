-- models/gold/star/dim_date.sql (table). DataFusion's to_char(date,
-- '%B') is DuckDB's strftime; date_part('week') is the ISO week in both,
-- date_part('dow') counts from Sunday 0 in both. home_country = FR.
create or replace table gold_dim_date as
with bounds as (
    select
        cast(date_trunc('year', min(first_day)) as date) as first_day,
        cast(date_trunc('year', max(last_day)) as date) as last_year
    from (
        select min(order_date) as first_day, max(order_date) as last_day from silver_orders_clean
        union all
        select min(cast(ts as date)), max(cast(ts as date)) from silver_clicks_clean
        union all
        select min(snapshot_date), max(snapshot_date) from silver_stock_clean
    ) spans
),

days as (
    select cast(unnest(generate_series(cast(first_day as timestamp),
                                       cast(cast(last_year + interval '1 year' - interval '1 day' as date) as timestamp),
                                       interval '1 day')) as date) as date_day
    from bounds
),

parts as (
    select
        date_day,
        cast(date_part('year', date_day) as int) as year,
        cast(date_part('quarter', date_day) as int) as quarter,
        cast(date_part('month', date_day) as int) as month,
        cast(date_part('day', date_day) as int) as day_of_month,
        cast(date_part('week', date_day) as int) as iso_week,
        (cast(date_part('dow', date_day) as int) + 6) % 7 + 1 as iso_day_of_week
    from days
)

select
    p.date_day,
    p.year,
    p.quarter,
    p.month,
    strftime(p.date_day, '%B') as month_name,
    strftime(p.date_day, '%Y-%m') as year_month,
    cast(date_trunc('month', p.date_day) as date) as month_start,
    p.day_of_month,
    case
        when p.month = 1 and p.iso_week >= 52 then p.year - 1
        when p.month = 12 and p.iso_week = 1 then p.year + 1
        else p.year
    end as iso_year,
    p.iso_week,
    p.iso_day_of_week,
    strftime(p.date_day, '%A') as weekday_name,
    p.iso_day_of_week >= 6 as is_weekend,
    h.holiday_name is not null as is_holiday,
    h.holiday_name
from parts p
left join reference_holidays h
    on h.holiday_date = p.date_day and h.country_code = 'FR';
