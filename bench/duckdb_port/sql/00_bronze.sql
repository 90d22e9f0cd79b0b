-- The bronze sources of models/sources.yml, typed as declared there (nothing
-- inferred). run.py replaces @BRONZE@ with the bronze folder (LAKE_BRONZE).
-- DataFusion's CSV reader reads an empty field as null, for varchar too;
-- DuckDB's read_csv does the same for an unquoted empty field.
create or replace view bronze_customers as
select * from read_csv('@BRONZE@/customers/*.csv.gz', header = true, auto_detect = false,
    columns = {'customer_id': 'BIGINT', 'first_name': 'VARCHAR', 'last_name': 'VARCHAR',
               'email': 'VARCHAR', 'country': 'VARCHAR', 'signup_date': 'VARCHAR'});

create or replace view bronze_products as
select * from read_csv('@BRONZE@/products/*.csv.gz', header = true, auto_detect = false,
    columns = {'product_id': 'BIGINT', 'name': 'VARCHAR', 'category': 'VARCHAR',
               'unit_price': 'DECIMAL(12,2)', 'cost': 'DECIMAL(12,2)', 'supplier_id': 'BIGINT'});

create or replace view bronze_orders as
select * from read_json('@BRONZE@/orders/*.jsonl.gz', format = 'newline_delimited',
    columns = {'order_id': 'BIGINT', 'customer_id': 'BIGINT', 'order_ts': 'VARCHAR',
               'updated_at': 'VARCHAR', 'status': 'VARCHAR', 'channel': 'VARCHAR',
               'country': 'VARCHAR', 'total_amount': 'DECIMAL(12,2)'});

create or replace view bronze_order_items as
select * from read_csv('@BRONZE@/order_items/*.csv.gz', header = true, auto_detect = false,
    columns = {'order_id': 'BIGINT', 'line_no': 'BIGINT', 'product_id': 'BIGINT',
               'quantity': 'BIGINT', 'unit_price': 'DECIMAL(12,2)'});

create or replace view bronze_order_events as
select * from read_json('@BRONZE@/order_events/*.jsonl.gz', format = 'newline_delimited',
    columns = {'event_id': 'VARCHAR', 'order_id': 'BIGINT', 'event_type': 'VARCHAR',
               'event_ts': 'VARCHAR', 'ingested_at': 'VARCHAR'});

create or replace view bronze_clicks as
select * from read_json('@BRONZE@/clicks/*.jsonl.gz', format = 'newline_delimited',
    columns = {'customer_id': 'BIGINT', 'page': 'VARCHAR', 'channel': 'VARCHAR',
               'ip': 'VARCHAR', 'ts': 'VARCHAR'});

create or replace view bronze_suppliers as
select * from read_csv('@BRONZE@/suppliers/*.csv.gz', header = true, auto_detect = false,
    columns = {'supplier_id': 'BIGINT', 'name': 'VARCHAR', 'country': 'VARCHAR',
               'lead_time_days': 'VARCHAR'});

create or replace view bronze_stock as
select * from read_csv('@BRONZE@/stock/*.csv.gz', header = true, auto_detect = false,
    columns = {'snapshot_date': 'VARCHAR', 'product_id': 'BIGINT', 'on_hand': 'BIGINT'});
