-- models/gold/ltv_cohorts.sql (incremental delete+insert by cohort_month;
-- full build). months_between expanded; cumulative_ltv rounded exactly,
-- as in sales_by_day.
create or replace table gold_ltv_cohorts as
with firsts as (
    select customer_id, min(order_month) as cohort_month
    from revenue_orders
    group by customer_id
),

months as (
    select distinct order_month from revenue_orders
),

activity as (
    select
        f.cohort_month,
        r.order_month,
        count(distinct r.customer_id) as active_customers,
        count(*) as orders,
        sum(r.revenue) as revenue
    from revenue_orders r
    join firsts f on f.customer_id = r.customer_id
    group by f.cohort_month, r.order_month
),

grid as (
    select c.order_month as cohort_month, m.order_month
    from months c
    join months m on m.order_month >= c.order_month
),

spread as (
    select
        g.cohort_month,
        g.order_month,
        a.active_customers,
        a.orders,
        a.revenue,
        max(case when a.order_month = a.cohort_month then a.active_customers end)
            over (partition by g.cohort_month) as cohort_customers
    from grid g
    left join activity a on a.cohort_month = g.cohort_month and a.order_month = g.order_month
),

filled as (
    select
        cohort_month,
        (cast(date_part('year', order_month) as int) - cast(date_part('year', cohort_month) as int)) * 12
            + cast(date_part('month', order_month) as int) - cast(date_part('month', cohort_month) as int)
            as months_since_first_order,
        order_month as activity_month,
        cohort_customers,
        coalesce(active_customers, 0) as active_customers,
        coalesce(orders, 0) as orders,
        coalesce(revenue, 0) as revenue
    from spread
    where cohort_customers is not null
),

cumulated as (
    select
        *,
        sum(revenue) over (
            partition by cohort_month order by months_since_first_order
            rows between unbounded preceding and current row
        ) as cumulative_revenue
    from filled
)

select
    cohort_month,
    months_since_first_order,
    activity_month,
    cohort_customers,
    active_customers,
    orders,
    revenue,
    cumulative_revenue,
    cast(cast(sign(cumulative_revenue) * ((abs(cast(cumulative_revenue * 100 as hugeint)) * 2 + cohort_customers) // (2 * cohort_customers)) as decimal(38, 0)) * 0.01
        as decimal(12, 2)) as cumulative_ltv,
    (select max(loaded_at) from silver_orders_clean) as orders_loaded_at
from cumulated
order by cohort_month, months_since_first_order;
