-- Every bronze row ends up somewhere: kept (orders merge their versions,
-- counted in `versions`) or rejected with a reason. A row per entity whose
-- counts do not add up; a row silently dropped or duplicated shows here.
with counts as (
    select
        'orders' as entity,
        (select count(*) from {{ source('bronze', 'orders') }}) as bronze_rows,
        (select sum(versions) from {{ ref('orders_clean') }}) as kept_rows,
        (select count(*) from {{ ref('orders_rejected') }}) as rejected_rows
    union all
    select
        'order_items',
        (select count(*) from {{ source('bronze', 'order_items') }}),
        (select count(*) from {{ ref('order_items_clean') }}),
        (select count(*) from {{ ref('order_items_rejected') }})
    union all
    select
        'order_events',
        (select count(*) from {{ source('bronze', 'order_events') }}),
        (select count(*) from {{ ref('order_events_clean') }}),
        (select count(*) from {{ ref('order_events_rejected') }})
    union all
    select
        'customers',
        (select count(*) from {{ source('bronze', 'customers') }}),
        (select count(*) from {{ ref('customers_clean') }}),
        (select count(*) from {{ ref('customers_rejected') }})
    union all
    select
        'clicks',
        (select count(*) from {{ source('bronze', 'clicks') }}),
        (select count(*) from {{ ref('clicks_clean') }}),
        (select count(*) from {{ ref('clicks_rejected') }})
    union all
    select
        'suppliers',
        (select count(*) from {{ source('bronze', 'suppliers') }}),
        (select sum(copies) from {{ ref('suppliers_clean') }}),
        (select count(*) from {{ ref('suppliers_rejected') }})
    union all
    select
        'stock',
        (select count(*) from {{ source('bronze', 'stock') }}),
        (select sum(copies) from {{ ref('stock_clean') }}),
        (select count(*) from {{ ref('stock_rejected') }})
)

select *
from counts
where bronze_rows is distinct from kept_rows + rejected_rows
