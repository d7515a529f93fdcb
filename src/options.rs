//! The arguments of the SQL functions that need more than a type to check: the `options jsonb`
//! argument, read key by key (a value of the wrong kind, or a key the function does not know, is
//! a 22023 ERROR naming the key and the valid ones), and `k`, the number of rows to rank.

use persona_core::text::Pooling;
use pgrx::PgSqlErrorCode::*;
use serde_json::{Map, Value};

use crate::error::raise_hint;

/// A jsonb options object.
pub struct Options<'a> {
    map: &'a Map<String, Value>,
    valid: &'static [&'static str],
    function: &'static str,
    /// For a function that hands other keys on: to what, for the hints.
    others: Option<&'static str>,
}

impl<'a> Options<'a> {
    /// The options of `function`, every key among `valid`.
    pub fn new(value: &'a Value, valid: &'static [&'static str], function: &'static str) -> Self {
        let o = Self::read(value, valid, function, None);
        if let Some(k) = o.others().next() {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown option \"{k}\" of {function}"),
                format!("Valid keys: {}.", valid.join(", ")),
            );
        }
        o
    }

    /// The options of `function`, which reads the keys in `valid` and hands the others on to
    /// `others` (e.g. "the algorithm", which checks them): see [`Self::other_options`].
    pub fn open(
        value: &'a Value,
        valid: &'static [&'static str],
        function: &'static str,
        others: &'static str,
    ) -> Self {
        Self::read(value, valid, function, Some(others))
    }

    fn read(
        value: &'a Value,
        valid: &'static [&'static str],
        function: &'static str,
        others: Option<&'static str>,
    ) -> Self {
        let Value::Object(map) = value else {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("the options of {function} must be a JSON object"),
                format!("Valid keys: {}.", valid_keys(valid, others)),
            )
        };
        Options {
            map,
            valid,
            function,
            others,
        }
    }

    /// The keys outside the function's own.
    pub fn others(&self) -> impl Iterator<Item = &'a String> + '_ {
        self.map
            .keys()
            .filter(|k| !self.valid.contains(&k.as_str()))
    }

    /// The options outside the function's own, as an object.
    pub fn other_options(&self) -> Map<String, Value> {
        self.map
            .iter()
            .filter(|(k, _)| !self.valid.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether `key` is present, even as JSON null.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The value of `key`; JSON null counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(self.valid.contains(&key));
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Raises 22023: `key` has the value `v`, which is not `want`.
    pub fn bad(&self, key: &str, want: &str, v: &Value) -> ! {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "option \"{key}\" of {} must be {want}, not {v}",
                self.function
            ),
            format!(
                "e.g. '{{\"{key}\": ...}}'; valid keys: {}.",
                valid_keys(self.valid, self.others)
            ),
        )
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            v => self.bad(key, "a string", v),
        })
    }

    pub fn boolean(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| match v {
            Value::Bool(b) => *b,
            v => self.bad(key, "true or false", v),
        })
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).map(|v| match v.as_f64() {
            Some(x) if x.is_finite() => x,
            _ => self.bad(key, "a number", v),
        })
    }

    pub fn integer(&self, key: &str, lo: u64, hi: u64) -> Option<u64> {
        self.get(key).map(|v| match v.as_u64() {
            Some(x) if (lo..=hi).contains(&x) => x,
            _ => self.bad(key, &format!("an integer from {lo} to {hi}"), v),
        })
    }

    /// A number or a non-empty list of numbers (`default` when absent).
    pub fn numbers(&self, key: &str, default: f64) -> Vec<f64> {
        let want = "a number or a list of numbers";
        let one = |v: &Value| match v.as_f64() {
            Some(x) if x.is_finite() => x,
            _ => self.bad(key, want, v),
        };
        match self.get(key) {
            None => vec![default],
            Some(Value::Array(a)) if !a.is_empty() => a.iter().map(one).collect(),
            Some(v) => vec![one(v)],
        }
    }

    /// A boolean or a non-empty list of booleans (`default` when absent).
    pub fn booleans(&self, key: &str, default: bool) -> Vec<bool> {
        let want = "true, false or a list of them";
        match self.get(key) {
            None => vec![default],
            Some(Value::Bool(b)) => vec![*b],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_bool().unwrap_or_else(|| self.bad(key, want, v)))
                .collect(),
            Some(v) => self.bad(key, want, v),
        }
    }

    /// An array of strings (empty when absent).
    pub fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    v => self.bad(key, "an array of strings", v),
                })
                .collect(),
            Some(v) => self.bad(key, "an array of strings", v),
        }
    }

    /// `pooling` as one name.
    pub fn pooling(&self) -> Option<Pooling> {
        self.get("pooling").map(|v| self.pooling_value(v, false))
    }

    /// `pooling` as one name or a non-empty list of names (duplicates dropped, order kept).
    pub fn poolings(&self) -> Option<Vec<Pooling>> {
        self.get("pooling").map(|v| match v {
            Value::Array(a) if !a.is_empty() => {
                let mut out: Vec<Pooling> = Vec::new();
                for p in a.iter().map(|x| self.pooling_value(x, true)) {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            }
            _ => vec![self.pooling_value(v, true)],
        })
    }

    fn pooling_value(&self, v: &Value, list: bool) -> Pooling {
        v.as_str().and_then(Pooling::from_name).unwrap_or_else(|| {
            let names = Pooling::ALL.map(|p| format!("\"{}\"", p.name())).join(", ");
            let what = if list {
                format!("one of {names} or a list of them")
            } else {
                format!("one of {names}")
            };
            self.bad("pooling", &what, v)
        })
    }
}

/// The value of argument `name` of `function`, which must not be NULL (22004). For functions
/// that cannot be STRICT because another argument's NULL means something.
pub fn required<T>(v: Option<T>, name: &str, function: &str) -> T {
    v.unwrap_or_else(|| {
        raise_hint(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("argument \"{name}\" of {function} must not be NULL"),
            "Pass a value, or leave the argument out to get its default.",
        )
    })
}

/// The valid keys of an options object, for hints.
fn valid_keys(valid: &[&str], others: Option<&str>) -> String {
    let own = valid.join(", ");
    match others {
        Some(to) => format!("{own}, and the options of {to}"),
        None => own,
    }
}

/// The `k` argument of the ranking functions (how many rows to return), which must be positive.
pub fn check_k(k: i32) -> usize {
    if k <= 0 {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("k must be positive, not {k}"),
            "Ask for at least one row, e.g. k => 10.",
        );
    }
    k as usize
}
