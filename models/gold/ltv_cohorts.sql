-- Monthly acquisition cohorts: a customer joins the cohort of the month of
-- their first revenue order seen in the lake (the lake starts on its first
-- day, so for older customers this is their first order since then). One
-- row per cohort and month since acquisition, up to the last month with
-- orders, months without activity included so that the cumulative columns
-- have no gaps.
with firsts as (
    select customer_id, min(order_month) as cohort_month
    from {{ ref('revenue_orders') }}
    group by customer_id
),

cohorts as (
    select cohort_month, count(*) as cohort_customers
    from firsts
    group by cohort_month
),

months as (
    select distinct order_month from {{ ref('revenue_orders') }}
),

grid as (
    select c.cohort_month, c.cohort_customers, m.order_month
    from cohorts c
    join months m on m.order_month >= c.cohort_month
),

activity as (
    select
        f.cohort_month,
        r.order_month,
        count(distinct r.customer_id) as active_customers,
        count(*) as orders,
        sum(r.revenue) as revenue
    from {{ ref('revenue_orders') }} r
    join firsts f on f.customer_id = r.customer_id
    group by f.cohort_month, r.order_month
),

filled as (
    select
        g.cohort_month,
        {{ months_between('g.cohort_month', 'g.order_month') }} as months_since_first_order,
        g.cohort_customers,
        coalesce(a.active_customers, 0) as active_customers,
        coalesce(a.orders, 0) as orders,
        coalesce(a.revenue, 0) as revenue
    from grid g
    left join activity a on a.cohort_month = g.cohort_month and a.order_month = g.order_month
)

select
    *,
    sum(revenue) over (
        partition by cohort_month order by months_since_first_order
        rows between unbounded preceding and current row
    ) as cumulative_revenue,
    cast(round(sum(revenue) over (
        partition by cohort_month order by months_since_first_order
        rows between unbounded preceding and current row
    ) / cohort_customers, 2) as decimal(12, 2)) as cumulative_ltv
from filled
order by cohort_month, months_since_first_order
