-- fct_stock_daily holds every snapshot of stock_clean once, and the units
-- it says were sold are the units of the revenue lines of that product
-- and day in orders_clean's clean lines.
with sold as (
    select o.order_date, i.product_id, sum(i.quantity) as units
    from {{ ref('orders_clean') }} o
    join {{ ref('order_items_clean') }} i on i.order_id = o.order_id
    where {{ is_revenue_order('o.status') }}
    group by o.order_date, i.product_id
),

expected as (
    select s.snapshot_date, s.product_id, s.on_hand, coalesce(d.units, 0) as units_sold
    from {{ ref('stock_clean') }} s
    left join sold d on d.order_date = s.snapshot_date and d.product_id = s.product_id
)

select
    coalesce(e.snapshot_date, f.snapshot_date) as snapshot_date,
    coalesce(e.product_id, f.product_id) as product_id,
    e.on_hand as expected_on_hand,
    f.on_hand as star_on_hand,
    e.units_sold as expected_units_sold,
    f.units_sold as star_units_sold
from expected e
full outer join {{ ref('fct_stock_daily') }} f
    on f.snapshot_date = e.snapshot_date and f.product_id = e.product_id
where (e.on_hand is distinct from f.on_hand) or (e.units_sold is distinct from f.units_sold)
