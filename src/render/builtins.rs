//! dbt's Jinja functions on values: `fromjson`, `tojson`, `fromyaml`,
//! `toyaml`, `zip`, `set`, `local_md5`, and `modules` (see `modules`).

use minijinja::value::{Rest, Value};
use minijinja::{Environment, Error, ErrorKind};

pub fn install(env: &mut Environment<'static>) {
    env.add_function("fromjson", fromjson);
    env.add_function("tojson", tojson);
    env.add_function("fromyaml", fromyaml);
    env.add_function("toyaml", toyaml);
    env.add_function("zip", zip);
    env.add_function("set", set);
    env.add_function("local_md5", local_md5);
    env.add_global("modules", Value::from_object(super::modules::Modules));
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `fromjson(text, default=none)`: the value, or `default` when `text` is
/// not JSON.
fn fromjson(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => Ok(Value::from(minijinja::value::Serde(value))),
        Err(e) => default.ok_or_else(|| invalid(format!("fromjson: not JSON: {e}"))),
    }
}

fn tojson(value: Value) -> Result<Value, Error> {
    serde_json::to_string(&value)
        .map(Value::from)
        .map_err(|e| invalid(format!("tojson: {e}")))
}

fn fromyaml(text: String, default: Option<Value>) -> Result<Value, Error> {
    match serde_saphyr::from_str::<serde_json::Value>(&text) {
        Ok(value) => Ok(Value::from(minijinja::value::Serde(value))),
        Err(e) => default.ok_or_else(|| invalid(format!("fromyaml: not YAML: {e}"))),
    }
}

fn toyaml(value: Value) -> Result<Value, Error> {
    serde_saphyr::to_string(&value)
        .map(Value::from)
        .map_err(|e| invalid(format!("toyaml: {e}")))
}

/// Python's `zip`: the n-th items of each list together, as long as the
/// shortest list.
fn zip(lists: Rest<Value>) -> Result<Value, Error> {
    let lists: Vec<Vec<Value>> = lists
        .iter()
        .map(|list| list.try_iter().map(Iterator::collect))
        .collect::<Result<_, _>>()?;
    let len = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::from(
        (0..len)
            .map(|i| Value::from(lists.iter().map(|l| l[i].clone()).collect::<Vec<_>>()))
            .collect::<Vec<_>>(),
    ))
}

/// Python's `set`: the distinct items, in their first order.
fn set(items: Option<Value>) -> Result<Value, Error> {
    let mut out: Vec<Value> = Vec::new();
    if let Some(items) = items {
        for item in items.try_iter()? {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    Ok(Value::from(out))
}

fn local_md5(text: String) -> String {
    use md5::Digest;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        install(&mut env);
        env.render_str(template, ())
    }

    #[test]
    fn dbts_value_functions_work_as_in_python() {
        assert_eq!(
            render("{{ fromjson('{\"a\": [1, 2]}').a | sum }}|{{ fromjson('nope', 0) }}").unwrap(),
            "3|0"
        );
        assert_eq!(render("{{ tojson({'a': 1}) }}").unwrap(), "{\"a\":1}");
        assert_eq!(render("{{ fromyaml('a: [x, z]').a | join(',') }}").unwrap(), "x,z");
        assert_eq!(render("{{ toyaml({'a': 1}) | trim }}").unwrap(), "a: 1");
        assert_eq!(
            render("{% for a, b in zip([1, 2, 3], ['x', 'y']) %}{{ a }}{{ b }};{% endfor %}").unwrap(),
            "1x;2y;"
        );
        assert_eq!(render("{{ set([1, 2, 1, 3]) | join(',') }}").unwrap(), "1,2,3");
        assert_eq!(
            render("{{ local_md5('a') }}").unwrap(),
            "0cc175b9c0f1b6a831c399e269772661"
        );
        let err = render("{{ modules.pytz.timezone('UTC') }}").unwrap_err();
        assert_eq!(
            err.detail(),
            Some(
                "`modules.pytz.timezone` is not available in etl yet: etl's Jinja is minijinja, not Python (etl \
                 has modules.re and modules.datetime)"
            )
        );
    }
}

#[cfg(test)]
mod module_tests {
    use super::*;

    fn render(template: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        install(&mut env);
        env.render_str(template, ())
    }

    #[test]
    fn modules_re_works_as_pythons_re() {
        let re = |t: &str| render(t).unwrap();
        assert_eq!(re("{{ modules.re.match('a(b+)', 'abbc').group(1) }}"), "bb");
        assert_eq!(re("{{ modules.re.match('b+', 'abbc') is none }}"), "True");
        assert_eq!(re("{{ modules.re.search('b+', 'abbc').span() }}"), "[1, 3]");
        assert_eq!(re("{{ modules.re.fullmatch('a.*', 'abc') is not none }}"), "True");
        assert_eq!(re("{{ modules.re.fullmatch('a.', 'abc') is none }}"), "True");
        assert_eq!(
            re("{{ modules.re.findall('[0-9]+', 'a1b22c333') }}"),
            "['1', '22', '333']"
        );
        assert_eq!(
            re("{{ modules.re.findall('(a)(\\d)', 'a1a2') }}"),
            "[['a', '1'], ['a', '2']]"
        );
        assert_eq!(
            re("{{ modules.re.sub('(\\w+)@(\\w+)', '\\\\2 at \\\\1 $', 'me@home') }}"),
            "home at me $"
        );
        assert_eq!(re("{{ modules.re.sub('a', 'b', 'aaa', count=2) }}"), "bba");
        assert_eq!(re("{{ modules.re.split(',\\s*', 'a, b,c') }}"), "['a', 'b', 'c']");
        assert_eq!(
            re("{{ modules.re.match('ABC', 'abc', modules.re.IGNORECASE).group() }}"),
            "abc"
        );
        assert_eq!(
            re("{% set p = modules.re.compile('^stg_(?P<name>.+)$') %}{{ p.match('stg_orders').group('name') }}"),
            "orders"
        );
        assert_eq!(re("{{ modules.re.escape('a.b') }}"), "a\\.b");
        let err = render("{{ modules.re.match('(a)\\\\1', 'aa') }}").unwrap_err();
        assert!(
            err.detail().unwrap().contains("no look-arounds or back-references"),
            "{err}"
        );
    }

    #[test]
    fn modules_datetime_works_as_pythons_datetime() {
        let dt = |t: &str| render(t).unwrap();
        assert_eq!(
            dt(
                "{{ modules.datetime.datetime(2024, 2, 28, 13, 5).add(modules.datetime.timedelta(days=2)).strftime('%Y-%m-%d %H:%M') }}"
            ),
            "2024-03-01 13:05"
        );
        assert_eq!(
            dt(
                "{{ modules.datetime.datetime.strptime('2024-01-31', '%Y-%m-%d').subtract(modules.datetime.timedelta(weeks=1)).date() }}"
            ),
            "2024-01-24"
        );
        assert_eq!(dt("{{ modules.datetime.date(2024, 5, 6).weekday() }}"), "0");
        assert_eq!(
            dt("{{ modules.datetime.datetime(2024, 5, 6, 1, 2, 3).strftime('%Y %f%z|%Z') }}"),
            "2024 000000|"
        );
        assert_eq!(
            dt("{{ modules.re.match('a b # letters', 'abc', modules.re.VERBOSE).group() }}"),
            "ab"
        );
        assert_eq!(dt("{{ modules.datetime.timedelta(hours=36) }}"), "1 day, 12:00:00");
        assert_eq!(dt("{{ modules.datetime.timedelta(hours=-1) }}"), "-1 day, 23:00:00");
        assert_eq!(dt("{{ modules.datetime.timedelta(hours=-1).days }}"), "-1");
        assert_eq!(
            dt("{{ modules.datetime.date(2024, 1, 31).replace(month=2, day=29) }}"),
            "2024-02-29"
        );
        assert_eq!(
            dt("{{ modules.re.split('(,)', 'a,b,c', maxsplit=1) }}"),
            "['a', ',', 'b,c']"
        );
        assert_eq!(
            dt("{{ modules.datetime.timedelta(minutes=90).total_seconds() }}"),
            "5400.0"
        );
        let year = dt("{{ modules.datetime.datetime.utcnow().year }}")
            .parse::<i32>()
            .unwrap();
        assert!(year >= 2024, "{year}");
        let err = render("{{ modules.datetime.date(2024, 2, 30) }}").unwrap_err();
        assert!(err.detail().unwrap().contains("is not a valid date"), "{err}");
    }
}
