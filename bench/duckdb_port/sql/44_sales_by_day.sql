-- models/gold/sales_by_day.sql (incremental insert_overwrite by
-- order_date; full build).
-- average_basket: DataFusion divides a decimal by an integer in decimal
-- (truncated at 6 digits) and rounds half away from zero; DuckDB divides
-- decimals in double, which can round a half-cent the other way. Computed
-- exactly in integer cents instead: round(c / n) = (2c + n) // 2n for
-- c >= 0 (the sign is put back for a negative c).
create or replace table gold_sales_by_day as
with orders as (
    select order_id, order_date, customer_id, revenue
    from revenue_orders
),

units as (
    select order_date, cast(sum(units) as bigint) as units
    from gold_product_days
    group by order_date
),

days as (
    select
        order_date,
        count(*) as orders,
        count(distinct customer_id) as customers,
        sum(revenue) as revenue
    from orders
    group by order_date
)

select
    d.order_date,
    d.orders,
    d.customers,
    coalesce(u.units, 0) as units,
    d.revenue,
    cast(cast(sign(d.revenue) * ((abs(cast(d.revenue * 100 as hugeint)) * 2 + d.orders) // (2 * d.orders)) as decimal(38, 0)) * 0.01
        as decimal(12, 2)) as average_basket,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from days d
left join units u on u.order_date = d.order_date
order by d.order_date;
