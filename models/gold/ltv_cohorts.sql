-- Monthly acquisition cohorts: a customer joins the cohort of the month of
-- their first revenue order seen in the lake (the lake starts on its first
-- day, so for older customers this is their first order since then). One
-- row per cohort and month since acquisition, up to the last month with
-- orders, months without activity included so that the cumulative columns
-- have no gaps.
--
-- Incremental: only the cohorts the orders merged since this table's
-- watermark (`orders_loaded_at`) can change are recomputed, and replace
-- their rows: the cohorts of every month their customers ordered in (a
-- customer's cohort is one of those, before and after the change), or all
-- of them when a new month begins, since every cohort gains a row then.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='cohort_month') }}
with firsts as (
    select customer_id, min(order_month) as cohort_month
    from {{ ref('revenue_orders') }}
    group by customer_id
),

months as (
    select distinct order_month from {{ ref('revenue_orders') }}
),

{% if is_incremental() %}
touched as (
    select distinct o.order_month as cohort_month
    from {{ ref('orders_clean') }} o
    where o.customer_id in (
        select distinct customer_id
        from {{ ref('orders_clean') }}
        where loaded_at > (select max(orders_loaded_at) from {{ this }})
    )
    union all
    -- A new month: every cohort gains a row. Every cohort's month is a
    -- month with orders.
    select order_month
    from months
    where (select max(order_month) from months) > (select max(activity_month) from {{ this }})
),
{% endif %}

activity as (
    select
        f.cohort_month,
        r.order_month,
        count(distinct r.customer_id) as active_customers,
        count(*) as orders,
        sum(r.revenue) as revenue
    from {{ ref('revenue_orders') }} r
    join firsts f on f.customer_id = r.customer_id
    {% if is_incremental() %}
    where f.cohort_month in (select cohort_month from touched)
    {% endif %}
    group by f.cohort_month, r.order_month
),

-- Every month with orders, and each month since: a cohort's rows, months
-- without activity included. activity is read once (DataFusion computes a
-- CTE once per use).
grid as (
    select c.order_month as cohort_month, m.order_month
    from months c
    join months m on m.order_month >= c.order_month
    {% if is_incremental() %}
    where c.order_month in (select cohort_month from touched)
    {% endif %}
),

spread as (
    select
        g.cohort_month,
        g.order_month,
        a.active_customers,
        a.orders,
        a.revenue,
        -- Each customer of a cohort is active in its first month, which
        -- holds their first revenue order: that is the cohort's size. A
        -- month in which no customer ordered first is no cohort.
        max(case when a.order_month = a.cohort_month then a.active_customers end)
            over (partition by g.cohort_month) as cohort_customers
    from grid g
    left join activity a on a.cohort_month = g.cohort_month and a.order_month = g.order_month
),

filled as (
    select
        cohort_month,
        {{ months_between('cohort_month', 'order_month') }} as months_since_first_order,
        order_month as activity_month,
        cohort_customers,
        coalesce(active_customers, 0) as active_customers,
        coalesce(orders, 0) as orders,
        coalesce(revenue, 0) as revenue
    from spread
    where cohort_customers is not null
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
    ) / cohort_customers, 2) as decimal(12, 2)) as cumulative_ltv,
    (select max(loaded_at) from {{ ref('orders_clean') }}) as orders_loaded_at
from filled
order by cohort_month, months_since_first_order
