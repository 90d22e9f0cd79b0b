select
    cast(o.order_ts as date) as order_date,
    c.region,
    count(*) as orders,
    sum(coalesce(o.total_amount, 0)) as revenue_{{ var('currency') | lower }}
from {{ ref('orders_clean') }} o
left join {{ ref('countries') }} c on c.country_code = o.country
where o.status = 'paid'
group by 1, 2
order by 1, 2
