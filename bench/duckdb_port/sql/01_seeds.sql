-- The seeds (seeds/*.csv) with the column types of seeds/seeds.yml.
-- run.py replaces @SEEDS@ with the seeds folder.
create or replace table reference_countries as
select * from read_csv('@SEEDS@/countries.csv', header = true, auto_detect = false,
    columns = {'country_code': 'VARCHAR', 'country_name': 'VARCHAR', 'region': 'VARCHAR'});

create or replace table reference_holidays as
select * from read_csv('@SEEDS@/holidays.csv', header = true, auto_detect = false,
    columns = {'holiday_date': 'DATE', 'country_code': 'VARCHAR', 'holiday_name': 'VARCHAR'});

create or replace table reference_channels as
select * from read_csv('@SEEDS@/channels.csv', header = true, auto_detect = false,
    columns = {'channel': 'VARCHAR', 'channel_name': 'VARCHAR', 'is_online': 'BOOLEAN'});
