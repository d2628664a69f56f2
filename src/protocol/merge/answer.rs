//! The JSON shapes of an InfluxDB 1.x `/query` answer ([`Answer`],
//! [`StatementResult`], [`Series`]) and their encoding: read leniently
//! (absent and `null` fields are empty), written compact with InfluxDB's key
//! order (the fields' declaration order) and without empty fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::MergeError;

/// An InfluxDB 1.x `/query` answer (one JSON document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// One result per statement.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub results: Vec<StatementResult>,
    /// A request-level error (`{"error":"error parsing query: …"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of one statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    /// The statement's index in the query. `None` when the node did not send
    /// one (InfluxDB before 1.2): the result's position is used instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<u64>,
    /// The series, in order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub series: Vec<Series>,
    /// Informational messages (`{"level":"warning","text":"…"}`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub messages: Vec<Value>,
    /// Whether the result was cut short (row limits, chunking).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub partial: bool,
    /// The statement's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One series of a result (InfluxDB's `models.Row`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The measurement (or `measurements`, `databases`… for `SHOW`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// The `GROUP BY` tags, sorted by key.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    /// The column names.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub columns: Vec<String>,
    /// The rows.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<Vec<Value>>,
    /// Whether more of this series follows (chunked answers).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub partial: bool,
}

fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Answer {
    /// Parses the body `node` answered.
    pub fn parse(node: &str, body: &[u8]) -> Result<Answer, MergeError> {
        serde_json::from_slice(body).map_err(|e| {
            let node = node.to_string();
            let message = e.to_string();
            if e.is_data() {
                MergeError::NotAnAnswer { node, message }
            } else {
                MergeError::NotJson { node, message }
            }
        })
    }

    /// The answer as InfluxDB writes it: compact JSON and a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings, numbers and maps with string keys cannot fail.
        let mut out = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        out
    }
}
