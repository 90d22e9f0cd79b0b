//! dbt's `modules`: the Python modules dbt's Jinja exposes, as far as
//! macros use them and a Rust implementation means the same thing.
//!
//! - `modules.re`: `match`, `search`, `fullmatch`, `findall`, `sub`,
//!   `split`, `escape`, `compile` (a pattern with the same methods) and the
//!   flags `I`/`IGNORECASE`, `M`/`MULTILINE`, `S`/`DOTALL`, `X`/`VERBOSE`;
//!   a match has `group()`, `groups()`, `start()`, `end()`, `span()` and is
//!   false-y when there is none (`none`). Python's syntax is Rust's regex
//!   syntax but for look-arounds and back-references, which are an error
//!   naming the pattern.
//! - `modules.datetime`: `datetime.now()`, `datetime.utcnow()`,
//!   `datetime.strptime()`, `datetime(y, m, d[, h, mi, s])`,
//!   `date.today()`, `date(y, m, d)`; each with `strftime`, `isoformat`,
//!   `year`...`second`, `date()`, `weekday()`, and `timedelta(...)` added
//!   with `.add(delta)`/`.subtract(delta)` -- minijinja has no operators on
//!   objects, so `now - timedelta(days=1)` is an error saying so.
//!
//! Other modules (`pytz`, `itertools`...) and names are an error naming
//! them.

use std::sync::Arc;

use chrono::{Datelike, Duration, Local, NaiveDate, NaiveDateTime, Timelike, Utc};
use minijinja::value::{Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `modules`: its attributes are the modules.
#[derive(Debug)]
pub(super) struct Modules;

impl Object for Modules {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        Some(match name {
            "re" => Value::from_object(Re),
            "datetime" => Value::from_object(DateTimeModule),
            other => Value::from_object(Unavailable(other.to_owned())),
        })
    }
}

/// A module or a name in one that etl does not have: an error when used.
#[derive(Debug)]
struct Unavailable(String);

impl Object for Unavailable {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from_object(Unavailable(format!("{}.{}", self.0, key.as_str()?))))
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, _args: &[Value]) -> Result<Value, Error> {
        Err(self.error())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        Err(Unavailable(format!("{}.{method}", self.0)).error())
    }
}

impl Unavailable {
    fn error(&self) -> Error {
        invalid(format!(
            "`modules.{}` is not available in etl yet: etl's Jinja is minijinja, not Python \
             (etl has modules.re and modules.datetime)",
            self.0
        ))
    }
}

// ---- modules.re ----

const IGNORECASE: i64 = 2;
const MULTILINE: i64 = 8;
const DOTALL: i64 = 16;
const VERBOSE: i64 = 64;

#[derive(Debug)]
struct Re;

impl Object for Re {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "I" | "IGNORECASE" => IGNORECASE,
            "M" | "MULTILINE" => MULTILINE,
            "S" | "DOTALL" => DOTALL,
            "X" | "VERBOSE" => VERBOSE,
            other => return Some(Value::from_object(Unavailable(format!("re.{other}")))),
        }))
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let text = |i: usize, name: &str| -> Result<String, Error> {
            match positional.get(i) {
                Some(v) => Ok(v.to_string()),
                None => kwargs
                    .get::<Option<String>>(name)?
                    .ok_or_else(|| invalid(format!("`modules.re.{method}` needs `{name}`"))),
            }
        };
        if method == "escape" {
            let escaped = regex::escape(&text(0, "pattern")?);
            kwargs.assert_all_used()?;
            return Ok(Value::from(escaped));
        }
        let pattern = text(0, "pattern")?;
        // The flags come after the arguments each function takes.
        let flags_at = match method {
            "sub" => 4,
            "split" => 3,
            "compile" => 1,
            _ => 2,
        };
        let flags = match positional.get(flags_at) {
            Some(v) => i64::try_from(v.clone()).unwrap_or(0),
            None => kwargs.get::<Option<i64>>("flags")?.unwrap_or(0),
        };
        let compiled = Arc::new(Pattern::new(&pattern, flags)?);
        if method == "compile" {
            kwargs.assert_all_used()?;
            return Ok(Value::from_object(PatternValue(compiled)));
        }
        let rest: Vec<Value> = positional.iter().skip(1).take(flags_at - 1).cloned().collect();
        let result = compiled.call(method, &rest, &kwargs)?;
        kwargs.assert_all_used()?;
        Ok(result)
    }
}

/// A compiled pattern, as `re.compile` gives it.
#[derive(Debug)]
struct Pattern {
    source: String,
    flags: i64,
    regex: regex::Regex,
}

impl Pattern {
    fn new(source: &str, flags: i64) -> Result<Pattern, Error> {
        let regex = regex::RegexBuilder::new(source)
            .case_insensitive(flags & IGNORECASE != 0)
            .multi_line(flags & MULTILINE != 0)
            .dot_matches_new_line(flags & DOTALL != 0)
            .ignore_whitespace(flags & VERBOSE != 0)
            .build()
            .map_err(|e| {
                invalid(format!(
                    "`{source}` is not a pattern etl's `modules.re` runs (Rust's regex syntax: no look-arounds \
                     or back-references): {e}"
                ))
            })?;
        Ok(Pattern {
            source: source.to_owned(),
            flags,
            regex,
        })
    }

    /// `method(string, ...)` with this pattern.
    fn call(self: &Arc<Self>, method: &str, args: &[Value], kwargs: &Kwargs) -> Result<Value, Error> {
        let arg = |i: usize, name: &str| -> Result<Option<Value>, Error> {
            match args.get(i) {
                Some(v) => Ok(Some(v.clone())),
                None => kwargs.get::<Option<Value>>(name),
            }
        };
        let string = |i: usize| -> Result<String, Error> {
            arg(i, "string")?
                .map(|v| v.to_string())
                .ok_or_else(|| invalid(format!("`re.{method}` needs a string")))
        };
        Ok(match method {
            "match" | "search" | "fullmatch" => {
                let text = string(0)?;
                // Python's match is anchored at the start, fullmatch at
                // both ends; search finds the leftmost match.
                let anchored;
                // A verbose pattern may end in a `# comment`: the group
                // closes on the next line.
                let close = if self.flags & VERBOSE != 0 { "\n)" } else { ")" };
                let regex = match method {
                    "match" => {
                        anchored = Pattern::new(&format!("\\A(?:{}{close}", self.source), self.flags)?;
                        &anchored.regex
                    }
                    "fullmatch" => {
                        anchored = Pattern::new(&format!("\\A(?:{}{close}\\z", self.source), self.flags)?;
                        &anchored.regex
                    }
                    _ => &self.regex,
                };
                match regex.captures(&text) {
                    Some(captures) => Value::from_object(MatchValue::new(self, &text, &captures)),
                    None => Value::from(()),
                }
            }
            "findall" => {
                let text = string(0)?;
                let groups = self.regex.captures_len() - 1;
                Value::from_iter(self.regex.captures_iter(&text).map(|c| match groups {
                    0 => Value::from(c.get(0).map_or("", |m| m.as_str())),
                    1 => Value::from(c.get(1).map_or("", |m| m.as_str())),
                    _ => Value::from_iter((1..=groups).map(|g| Value::from(c.get(g).map_or("", |m| m.as_str())))),
                }))
            }
            "sub" => {
                let replacement = arg(0, "repl")?
                    .map(|v| v.to_string())
                    .ok_or_else(|| invalid("`re.sub` needs a replacement".into()))?;
                let text = string(1)?;
                let count = arg(2, "count")?.and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
                let replacement = python_replacement(&replacement);
                let limit = usize::try_from(count).unwrap_or(0);
                Value::from(self.regex.replacen(&text, limit, replacement.as_str()).into_owned())
            }
            "split" => {
                // As Python's: the text between matches, with each match's
                // groups between them when the pattern has any.
                let text = string(0)?;
                let max = arg(1, "maxsplit")?.and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
                let mut parts: Vec<Value> = Vec::new();
                let mut last = 0;
                for (n, captures) in self.regex.captures_iter(&text).enumerate() {
                    if max > 0 && n as i64 >= max {
                        break;
                    }
                    let whole = captures.get(0).expect("group 0 is the match");
                    parts.push(Value::from(&text[last..whole.start()]));
                    for g in 1..captures.len() {
                        parts.push(captures.get(g).map_or(Value::from(()), |m| Value::from(m.as_str())));
                    }
                    last = whole.end();
                }
                parts.push(Value::from(&text[last..]));
                Value::from(parts)
            }
            other => return Err(Unavailable(format!("re.{other}")).error()),
        })
    }
}

/// Python's `\1` and `\g<name>` in a replacement, as Rust's `${1}` and
/// `${name}`; a `$` is literal.
fn python_replacement(replacement: &str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        group.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
struct PatternValue(Arc<Pattern>);

impl Object for PatternValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "pattern").then(|| Value::from(self.0.source.clone()))
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let result = self.0.call(method, positional, &kwargs)?;
        kwargs.assert_all_used()?;
        Ok(result)
    }
}

/// A match: its groups' text and positions (in characters, as Python's).
#[derive(Debug)]
struct MatchValue {
    groups: Vec<Option<(String, usize, usize)>>,
    names: Vec<Option<String>>,
}

impl MatchValue {
    fn new(pattern: &Pattern, text: &str, captures: &regex::Captures<'_>) -> MatchValue {
        let chars = |byte: usize| text[..byte].chars().count();
        MatchValue {
            groups: (0..captures.len())
                .map(|i| {
                    captures
                        .get(i)
                        .map(|m| (m.as_str().to_owned(), chars(m.start()), chars(m.end())))
                })
                .collect(),
            names: pattern.regex.capture_names().map(|n| n.map(str::to_owned)).collect(),
        }
    }

    fn group(&self, which: &Value) -> Result<Option<&(String, usize, usize)>, Error> {
        let index = match which.as_str() {
            Some(name) => self
                .names
                .iter()
                .position(|n| n.as_deref() == Some(name))
                .ok_or_else(|| invalid(format!("no group named `{name}`")))?,
            None => which.as_usize().unwrap_or(0),
        };
        self.groups
            .get(index)
            .map(Option::as_ref)
            .ok_or_else(|| invalid(format!("no group {index}")))
    }
}

impl Object for MatchValue {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        let first = args.first().cloned().unwrap_or(Value::from(0));
        let text = |g: Option<&(String, usize, usize)>| g.map_or(Value::from(()), |(t, _, _)| Value::from(t.clone()));
        Ok(match method {
            "group" if args.len() > 1 => Value::from(
                args.iter()
                    .map(|a| self.group(a).map(text))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            "group" => text(self.group(&first)?),
            "groups" => Value::from_iter(self.groups.iter().skip(1).map(|g| text(g.as_ref()))),
            "start" => Value::from(self.group(&first)?.map_or(-1, |g| g.1 as i64)),
            "end" => Value::from(self.group(&first)?.map_or(-1, |g| g.2 as i64)),
            "span" => {
                let (s, e) = self.group(&first)?.map_or((-1, -1), |g| (g.1 as i64, g.2 as i64));
                Value::from(vec![Value::from(s), Value::from(e)])
            }
            "groupdict" => Value::from_iter(
                self.names
                    .iter()
                    .zip(&self.groups)
                    .filter_map(|(n, g)| n.as_ref().map(|n| (n.clone(), text(g.as_ref())))),
            ),
            other => return Err(Unavailable(format!("re.Match.{other}")).error()),
        })
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.groups[0].as_ref().map_or("", |g| g.0.as_str());
        write!(f, "<re.Match object; match='{whole}'>")
    }
}

// ---- modules.datetime ----

#[derive(Debug)]
struct DateTimeModule;

impl Object for DateTimeModule {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "datetime" => Value::from_object(DateTimeClass { date_only: false }),
            "date" => Value::from_object(DateTimeClass { date_only: true }),
            "timedelta" => Value::from_object(TimedeltaClass),
            other => Value::from_object(Unavailable(format!("datetime.{other}"))),
        })
    }
}

/// `datetime.datetime` or `datetime.date`: callable, with class methods.
#[derive(Debug)]
struct DateTimeClass {
    date_only: bool,
}

impl DateTimeClass {
    fn class(&self) -> &'static str {
        if self.date_only { "date" } else { "datetime" }
    }

    fn value(&self, at: NaiveDateTime) -> Value {
        Value::from_object(DateTimeValue {
            at,
            date_only: self.date_only,
        })
    }
}

impl Object for DateTimeClass {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let names = ["year", "month", "day", "hour", "minute", "second"];
        let mut parts = [0i64; 6];
        for (i, name) in names.iter().enumerate() {
            parts[i] = match positional.get(i) {
                Some(v) => i64::try_from(v.clone())?,
                None => kwargs.get::<Option<i64>>(name)?.unwrap_or(0),
            };
        }
        kwargs.assert_all_used()?;
        let bad = || invalid(format!("`{}({parts:?})` is not a valid {}", self.class(), self.class()));
        let date = NaiveDate::from_ymd_opt(parts[0] as i32, parts[1] as u32, parts[2] as u32).ok_or_else(bad)?;
        let at = date
            .and_hms_opt(parts[3] as u32, parts[4] as u32, parts[5] as u32)
            .ok_or_else(bad)?;
        Ok(self.value(at))
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match (method, self.date_only) {
            ("now", false) => Ok(self.value(Local::now().naive_local())),
            ("utcnow", false) => Ok(self.value(Utc::now().naive_utc())),
            ("today", _) => Ok(self.value(Local::now().naive_local())),
            ("strptime", false) => {
                let (text, format): (String, String) = from_args(args)?;
                let at = NaiveDateTime::parse_from_str(&text, &format)
                    .or_else(|_| NaiveDate::parse_from_str(&text, &format).map(|d| d.and_time(Default::default())))
                    .map_err(|e| invalid(format!("`{text}` does not match `{format}`: {e}")))?;
                Ok(self.value(at))
            }
            ("fromisoformat", _) => {
                let (text,): (String,) = from_args(args)?;
                let at = NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
                    .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f"))
                    .or_else(|_| NaiveDate::parse_from_str(&text, "%Y-%m-%d").map(|d| d.and_time(Default::default())))
                    .map_err(|e| invalid(format!("`{text}` is not an ISO date: {e}")))?;
                Ok(self.value(at))
            }
            (other, _) => Err(Unavailable(format!("datetime.{}.{other}", self.class())).error()),
        }
    }
}

/// A `datetime` or a `date`.
#[derive(Debug)]
struct DateTimeValue {
    at: NaiveDateTime,
    date_only: bool,
}

impl DateTimeValue {
    fn shifted(&self, delta: &Value, sign: i32) -> Result<Value, Error> {
        let delta = delta
            .downcast_object_ref::<Timedelta>()
            .ok_or_else(|| invalid(format!("`{delta}` is not a `modules.datetime.timedelta`")))?;
        let at = self
            .at
            .checked_add_signed(delta.0 * sign)
            .ok_or_else(|| invalid("the date is out of range".into()))?;
        Ok(Value::from_object(DateTimeValue {
            at,
            date_only: self.date_only,
        }))
    }
}

impl Object for DateTimeValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let at = &self.at;
        Some(Value::from(match key.as_str()? {
            "year" => at.year() as i64,
            "month" => at.month() as i64,
            "day" => at.day() as i64,
            "hour" if !self.date_only => at.hour() as i64,
            "minute" if !self.date_only => at.minute() as i64,
            "second" if !self.date_only => at.second() as i64,
            _ => return None,
        }))
    }

    fn call_method(self: &Arc<Self>, _state: &mut State<'_, '_>, method: &str, args: &[Value]) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let (format,): (String,) = from_args(args)?;
                // Python's `%f` is microseconds; a naive time has no zone,
                // which Python writes as nothing.
                let chrono_format = format.replace("%f", "%6f").replace("%z", "").replace("%Z", "");
                let items: Vec<_> = chrono::format::StrftimeItems::new(&chrono_format).collect();
                if items.iter().any(|i| matches!(i, chrono::format::Item::Error)) {
                    return Err(invalid(format!("`{format}` is not a valid strftime format")));
                }
                let mut out = String::new();
                use std::fmt::Write as _;
                write!(out, "{}", self.at.format_with_items(items.into_iter()))
                    .map_err(|_| invalid(format!("`{format}` cannot format `{}`", self.at)))?;
                Ok(Value::from(out))
            }
            "isoformat" if self.date_only => Ok(Value::from(self.at.format("%Y-%m-%d").to_string())),
            "isoformat" => Ok(Value::from(self.at.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
            "date" => Ok(Value::from_object(DateTimeValue {
                at: self.at.date().and_time(Default::default()),
                date_only: true,
            })),
            "weekday" => Ok(Value::from(self.at.weekday().num_days_from_monday() as i64)),
            "isoweekday" => Ok(Value::from(self.at.weekday().number_from_monday() as i64)),
            "timestamp" => Ok(Value::from(self.at.and_utc().timestamp())),
            "add" => self.shifted(args.first().unwrap_or(&Value::from(())), 1),
            "subtract" => self.shifted(args.first().unwrap_or(&Value::from(())), -1),
            "replace" => {
                // All fields at once, as Python does: Jan 31 with
                // `month=2, day=29` is Feb 29.
                let (_, kwargs): (&[Value], Kwargs) = from_args(args)?;
                let at = self.at;
                let field = |key: &str, now: u32| -> Result<u32, Error> {
                    Ok(kwargs.get::<Option<i64>>(key)?.map_or(now, |v| v as u32))
                };
                let year = kwargs.get::<Option<i64>>("year")?.map_or(at.year(), |y| y as i32);
                let (month, day) = (field("month", at.month())?, field("day", at.day())?);
                let (hour, minute, second) = (
                    field("hour", at.hour())?,
                    field("minute", at.minute())?,
                    field("second", at.second())?,
                );
                let _ = kwargs.get::<Option<i64>>("microsecond")?;
                kwargs.assert_all_used()?;
                let at = NaiveDate::from_ymd_opt(year, month, day)
                    .and_then(|d| d.and_hms_opt(hour, minute, second))
                    .ok_or_else(|| invalid("`replace` gives no valid date".into()))?;
                Ok(Value::from_object(DateTimeValue {
                    at,
                    date_only: self.date_only,
                }))
            }
            other => Err(Unavailable(format!("datetime.{other}")).error()),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.date_only {
            write!(f, "{}", self.at.format("%Y-%m-%d"))
        } else {
            write!(f, "{}", self.at.format("%Y-%m-%d %H:%M:%S%.f"))
        }
    }
}

/// `datetime.timedelta(days=..., hours=..., ...)`.
#[derive(Debug)]
struct TimedeltaClass;

impl Object for TimedeltaClass {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
        let units = [
            ("days", 86_400.0),
            ("seconds", 1.0),
            ("microseconds", 1e-6),
            ("milliseconds", 1e-3),
            ("minutes", 60.0),
            ("hours", 3_600.0),
            ("weeks", 604_800.0),
        ];
        let mut seconds = 0.0;
        for (i, (name, scale)) in units.iter().enumerate() {
            let amount = match positional.get(i) {
                Some(v) => f64::try_from(v.clone())?,
                None => kwargs.get::<Option<f64>>(name)?.unwrap_or(0.0),
            };
            seconds += amount * scale;
        }
        kwargs.assert_all_used()?;
        Ok(Value::from_object(Timedelta(Duration::microseconds(
            (seconds * 1e6).round() as i64,
        ))))
    }
}

#[derive(Debug)]
struct Timedelta(Duration);

impl Object for Timedelta {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = self.0;
        Some(match key.as_str()? {
            "days" => Value::from(d.num_seconds().div_euclid(86_400)),
            "seconds" => Value::from(d.num_seconds().rem_euclid(86_400)),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "total_seconds" => Ok(Value::from(self.0.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)),
            other => Err(Unavailable(format!("datetime.timedelta.{other}")).error()),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As Python: whole days (negative for a negative delta) and the
        // seconds after them, always positive (`-1 day, 23:00:00`).
        let d = self.0;
        let days = d.num_seconds().div_euclid(86_400);
        let rest = d.num_seconds().rem_euclid(86_400);
        let time = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
        match days {
            0 => f.write_str(&time),
            1 | -1 => write!(f, "{days} day, {time}"),
            n => write!(f, "{n} days, {time}"),
        }
    }
}
