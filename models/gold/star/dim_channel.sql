-- The sales channels, from the channels seed, with the number of orders
-- each has seen so that an unused channel shows.
select
    c.channel,
    c.channel_name,
    c.is_online,
    coalesce(o.orders, 0) as orders
from {{ ref('channels') }} c
left join (
    select channel, count(*) as orders from {{ ref('orders_clean') }} group by channel
) o on o.channel = c.channel
