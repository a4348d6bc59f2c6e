//! The predicate of session searches (upstream's `Cond` where-expression, reduced to a small
//! typed tree over [`EventFields`]).

use serde_json::Value;

use crate::EventFields;

/// A condition on an event's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The field equals the value (numbers compare as numbers: `1` equals `1.0`).
    FieldEquals {
        /// The field name (top level of the JSON object).
        field: String,
        /// The value.
        value: Value,
    },
    /// The field is a list of strings holding `value` (e.g. `participants`).
    Contains {
        /// The field name.
        field: String,
        /// The string looked for.
        value: String,
    },
    /// The field is present and not `null`.
    Exists {
        /// The field name.
        field: String,
    },
    /// Every condition holds (true when empty).
    And(Vec<Condition>),
    /// At least one condition holds (false when empty).
    Or(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// `field == value` for a string value.
    pub fn equals(field: &str, value: &str) -> Condition {
        Condition::FieldEquals {
            field: field.to_string(),
            value: Value::String(value.to_string()),
        }
    }

    /// Whether the event's fields satisfy the condition.
    pub fn matches(&self, f: &EventFields) -> bool {
        match self {
            Condition::FieldEquals { field, value } => match (f.0.get(field), value) {
                (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (Some(a), b) => a == b,
                (None, _) => false,
            },
            Condition::Contains { field, value } => match f.0.get(field) {
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(value.as_str())),
                _ => false,
            },
            Condition::Exists { field } => f.0.get(field).is_some_and(|v| !v.is_null()),
            Condition::And(v) => v.iter().all(|c| c.matches(f)),
            Condition::Or(v) => v.iter().any(|c| c.matches(f)),
            Condition::Not(c) => !c.matches(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions() {
        let f = EventFields::parse(
            r#"{"event":"session.end","user":"bob","ei":3,"participants":["bob","joe"],"x":null}"#,
        )
        .unwrap();
        assert!(Condition::equals("user", "bob").matches(&f));
        assert!(!Condition::equals("user", "joe").matches(&f));
        assert!(!Condition::equals("login", "").matches(&f));
        let ei = |v| Condition::FieldEquals {
            field: "ei".into(),
            value: v,
        };
        assert!(ei(json!(3)).matches(&f));
        assert!(ei(json!(3.0)).matches(&f));
        assert!(!ei(json!("3")).matches(&f));
        let has = |v: &str| Condition::Contains {
            field: "participants".into(),
            value: v.into(),
        };
        assert!(has("joe").matches(&f));
        assert!(!has("ann").matches(&f));
        assert!(
            Condition::Exists {
                field: "user".into()
            }
            .matches(&f)
        );
        assert!(!Condition::Exists { field: "x".into() }.matches(&f));
        assert!(Condition::And(vec![]).matches(&f));
        assert!(!Condition::Or(vec![]).matches(&f));
        assert!(Condition::Or(vec![has("ann"), has("bob")]).matches(&f));
        assert!(!Condition::And(vec![has("ann"), has("bob")]).matches(&f));
        assert!(Condition::Not(Box::new(has("ann"))).matches(&f));
    }
}
