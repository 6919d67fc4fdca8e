//! Reading typed values out of JSON while keeping track of where we are, so that a
//! rejection names the exact field (`data.items[2].qty`) and says why.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::timestamp::{TimeError, Timestamp};

/// Why an event was rejected: the dotted path of the offending field and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A position in a JSON document, built on the stack and rendered only on error.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    pub fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    pub fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }

    pub fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.to_string(), message)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Key(parent, key) => {
                if matches!(parent, Path::Root("")) {
                    f.write_str(key)
                } else {
                    write!(f, "{parent}.{key}")
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A value that can be read from JSON at a path.
pub trait FromJson: Sized {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError>;

    /// What a missing or `null` field means: an error, unless the type is optional.
    fn missing(path: &Path<'_>) -> Result<Self, FieldError> {
        Err(path.error("is required"))
    }
}

/// A value read straight from JSON text, without a tree of the whole document
/// first: the fast way for events written plainly. It accepts exactly what
/// [`FromJson`] accepts or fails; on failure the caller reads the event again as a
/// tree, by [`FromJson`], which names the field and says why. So a leaf (a string,
/// a number) is checked by its own [`FromJson`], and only objects, arrays and
/// optional fields are walked here.
pub trait FromText: FromJson {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let path = Path::Root("");
        let read = if value.is_null() {
            Self::missing(&path)
        } else {
            Self::from_json(&value, &path)
        };
        read.map_err(serde::de::Error::custom)
    }

    /// The value of a field the object does not have, when that is allowed.
    fn absent() -> Option<Self> {
        None
    }
}

/// A [`FromText`] value as serde reads it.
pub struct Text<T>(pub T);

impl<'de, T: FromText> serde::Deserialize<'de> for Text<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::read(d).map(Text)
    }
}

impl FromText for bool {}
impl FromText for i64 {}
impl FromText for u32 {}
impl FromText for u64 {}
impl FromText for f64 {}
impl FromText for Timestamp {}
impl FromText for Map<String, Value> {}

impl FromText for String {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(s)
    }
}

impl<T: FromText> FromText for Option<T> {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <Option<Text<T>> as serde::Deserialize>::deserialize(d).map(|t| t.map(|t| t.0))
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: FromText> FromText for Vec<T> {
    fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <Vec<Text<T>> as serde::Deserialize>::deserialize(d).map(|items| items.into_iter().map(|t| t.0).collect())
    }
}

/// Reads field `key` of `object` (absent and `null` are both "missing").
pub fn field<T: FromJson>(object: &Map<String, Value>, path: &Path<'_>, key: &str) -> Result<T, FieldError> {
    let path = path.key(key);
    match object.get(key) {
        None | Some(Value::Null) => T::missing(&path),
        Some(v) => T::from_json(v, &path),
    }
}

/// What a JSON value is, for messages: "a string", "an array"…
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn expected(path: &Path<'_>, what: &str, value: &Value) -> FieldError {
    path.error(format!("must be {what}, not {}", kind_of(value)))
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        T::from_json(value, path).map(Some)
    }

    fn missing(_: &Path<'_>) -> Result<Self, FieldError> {
        Ok(None)
    }
}

impl FromJson for String {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        match value {
            Value::String(s) if s.is_empty() => Err(path.error("must not be empty")),
            Value::String(s) => Ok(s.clone()),
            other => Err(expected(path, "a string", other)),
        }
    }
}

impl FromJson for bool {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        value.as_bool().ok_or_else(|| expected(path, "true or false", value))
    }
}

impl FromJson for i64 {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        match value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| path.error(format!("must be a whole number, not {n}"))),
            other => Err(expected(path, "a whole number", other)),
        }
    }
}

impl FromJson for u32 {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let n = i64::from_json(value, path)?;
        u32::try_from(n).map_err(|_| path.error(format!("must be between 0 and {}, not {n}", u32::MAX)))
    }
}

impl FromJson for u64 {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let n = i64::from_json(value, path)?;
        u64::try_from(n).map_err(|_| path.error(format!("must not be negative, not {n}")))
    }
}

impl FromJson for f64 {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        value.as_f64().ok_or_else(|| expected(path, "a number", value))
    }
}

impl FromJson for Timestamp {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        match value {
            Value::String(s) => Timestamp::parse(s).map_err(|e| match e {
                TimeError::Malformed => path.error(format!(
                    "must be an RFC 3339 date-time such as 2026-11-23T09:30:00Z, not {s:?}"
                )),
                TimeError::OutOfRange => path.error(format!("{e}, not {s:?}")),
            }),
            other => Err(expected(path, "an RFC 3339 date-time string", other)),
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let items = value.as_array().ok_or_else(|| expected(path, "an array", value))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item, &path.index(i)))
            .collect()
    }
}

impl FromJson for Map<String, Value> {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        value
            .as_object()
            .cloned()
            .ok_or_else(|| expected(path, "an object", value))
    }
}

/// An integer that must lie in an inclusive range, such as an NPS score.
macro_rules! bounded_int {
    ($(#[$meta:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(pub u8);

        impl $crate::field::FromJson for $name {
            fn from_json(value: &serde_json::Value, path: &$crate::field::Path<'_>) -> Result<Self, $crate::field::FieldError> {
                let n = <i64 as $crate::field::FromJson>::from_json(value, path)?;
                if ($min..=$max).contains(&n) {
                    Ok($name(n as u8))
                } else {
                    Err(path.error(format!("must be between {} and {}, not {n}", $min, $max)))
                }
            }
        }

        impl $crate::field::FromText for $name {}
    };
}
pub(crate) use bounded_int;

/// A string that must be one of a fixed set of values.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl $crate::field::FromJson for $name {
            fn from_json(value: &serde_json::Value, path: &$crate::field::Path<'_>) -> Result<Self, $crate::field::FieldError> {
                let allowed = || [$($text),+].join("|");
                match value {
                    serde_json::Value::String(s) => $name::parse(s)
                        .ok_or_else(|| path.error(format!("must be one of {}, not {s:?}", allowed()))),
                    other => Err($crate::field::expected(path, &format!("one of {}", allowed()), other)),
                }
            }
        }

        impl $crate::field::FromText for $name {}
    };
}
pub(crate) use string_enum;

/// A struct read from a JSON object field by field; `check` adds rules that span fields.
macro_rules! json_struct {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } $(check($this:ident, $p:ident) $check:block)?) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name { $(pub $field: $ty),* }

        impl $name {
            /// Each field's name and Rust type, for tools that check references to fields.
            pub const FIELD_TYPES: &'static [(&'static str, &'static str)] = &[$((stringify!($field), stringify!($ty))),*];
        }

        impl $name {
            /// The rules that span fields.
            #[allow(unused_variables)]
            fn check_fields(&self, path: &$crate::field::Path<'_>) -> Result<(), $crate::field::FieldError> {
                $({ let $this = self; let $p = path; $check })?
                Ok(())
            }
        }

        impl $crate::field::FromJson for $name {
            #[allow(unused_variables)]
            fn from_json(value: &serde_json::Value, path: &$crate::field::Path<'_>) -> Result<Self, $crate::field::FieldError> {
                let object = value.as_object().ok_or_else(|| $crate::field::expected(path, "an object", value))?;
                let this = $name { $($field: $crate::field::field(object, path, stringify!($field))?),* };
                this.check_fields(path)?;
                Ok(this)
            }
        }

        impl $crate::field::FromText for $name {
            fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }

                    #[allow(unused_mut)]
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use serde::de::Error;
                        $(let mut $field: Option<$ty> = None;)*
                        // A key with an escape, or one given twice, is left to the tree.
                        while let Some(key) = map.next_key::<&'de str>()? {
                            match key {
                                $(stringify!($field) => {
                                    if $field.is_some() {
                                        return Err(A::Error::custom("a field is given twice"));
                                    }
                                    $field = Some(map.next_value::<$crate::field::Text<$ty>>()?.0);
                                })*
                                _ => {
                                    map.next_value::<serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        let this = $name {
                            $($field: match $field.or_else(<$ty as $crate::field::FromText>::absent) {
                                Some(value) => value,
                                None => return Err(A::Error::custom("a field is missing")),
                            }),*
                        };
                        this.check_fields(&$crate::field::Path::Root("")).map_err(A::Error::custom)?;
                        Ok(this)
                    }
                }
                d.deserialize_map(Fields)
            }
        }
    };
}
pub(crate) use json_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_dotted_names() {
        let root = Path::Root("data");
        let items = root.key("items");
        let second = items.index(2);
        assert_eq!(second.key("qty").to_string(), "data.items[2].qty");
        let top = Path::Root("");
        assert_eq!(top.key("time").to_string(), "time");
    }
}
