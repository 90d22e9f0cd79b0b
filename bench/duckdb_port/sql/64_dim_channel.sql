-- models/gold/star/dim_channel.sql (table).
create or replace table gold_dim_channel as
select
    c.channel,
    c.channel_name,
    c.is_online,
    coalesce(o.orders, 0) as orders
from reference_channels c
left join (
    select channel, count(*) as orders from silver_orders_clean group by channel
) o on o.channel = c.channel;
