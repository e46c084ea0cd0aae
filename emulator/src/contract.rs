//! The official contract: Pipecat's OpenAPI description of the API
//! (`contract/pipecat-cloud/openapi.json`, embedded), the operation a request is for, and a
//! validator of the subset of OpenAPI 3.0 schemas it uses: `$ref`, `allOf`, `oneOf`, `type`,
//! `nullable`, `enum`, `required`, `properties`, `additionalProperties`, `items`, `minItems`,
//! `maxItems`, `minimum`, `maximum`, `minLength`, `maxLength`, `pattern` and the formats
//! `uuid`, `date-time` and `uri`.
//!
//! Strict mode (`server.rs`) checks every `/v1` request against it (path and query parameters,
//! and the body with unknown fields forbidden wherever a request schema lists its `properties`)
//! and every answer of the emulator's own (not a fault's) against the response schema of its
//! operation and status. An error status the operation does not list is checked against the
//! contract's `ErrorResponse`: the spec leaves out some real ones (401 on the agent paths, 409
//! while a secret set provisions), and every error the emulator answers has that shape.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::{Map, Value};

/// The vendored contract, as published (prose descriptions left out).
pub const OPENAPI_JSON: &str = include_str!("../../contract/pipecat-cloud/openapi.json");

static CONTRACT: LazyLock<Contract> =
    LazyLock::new(|| Contract::parse(OPENAPI_JSON).expect("the vendored contract parses"));

/// A request or answer that breaks the contract: where, and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where: `body.autoScaling.minAgents`, `query parameter region`, `status`, ...
    pub at: String,
    /// What rule, in words.
    pub rule: String,
}

impl Violation {
    fn new(at: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.rule)
    }
}

/// Which way a body travels: request schemas forbid unknown fields, response schemas allow
/// them (the spec never says `additionalProperties: false`, and the API adds fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request body or parameter.
    Request,
    /// An answer.
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One operation of the contract.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `operationId`, e.g. `createService`.
    pub id: String,
    method: String,
    segments: Vec<Segment>,
    /// Key of the path item in `paths`.
    path_key: String,
}

/// The parsed contract.
#[derive(Debug)]
pub struct Contract {
    doc: Value,
    operations: Vec<Operation>,
}

/// The path of a server URL (`https://api.pipecat.daily.co/v1` -> `/v1`).
fn server_path(servers: Option<&Value>) -> Option<String> {
    let url = servers?.as_array()?.first()?.get("url")?.as_str()?;
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |i| &after_scheme[i..])
        .trim_end_matches('/');
    Some(path.to_owned())
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect()
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space).
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Whether `text` matches the ECMA-style `pattern` (the spec's patterns are in the subset the
/// `regex` crate reads); an unreadable pattern matches everything.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
    let regex = cache
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).ok());
    regex.as_ref().is_none_or(|r| r.is_match(text))
}

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
        .expect("valid regex")
});
static URI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*$").expect("valid regex"));

/// Whether `text` has `format` (unknown formats always do).
fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "uuid" => UUID.is_match(text),
        // RFC 3339: a date, `T`, a time and an offset (`Z` or `+hh:mm`).
        "date-time" => {
            text.len() >= 20
                && text
                    .as_bytes()
                    .get(10)
                    .is_some_and(|b| matches!(b, b'T' | b't'))
                && text.parse::<jiff::Timestamp>().is_ok()
        }
        "uri" => URI.is_match(text),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64()
                || n.is_u64()
                || n.as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

fn has_type(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => is_integer(value),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn child(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// Checks values against the contract's schemas.
struct Validator<'a> {
    doc: &'a Value,
    direction: Direction,
}

impl<'a> Validator<'a> {
    /// Follows `$ref`s (`#/components/...`).
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let Some(target) = reference
                .strip_prefix('#')
                .and_then(|pointer| self.doc.pointer(pointer))
            else {
                return &Value::Null;
            };
            schema = target;
        }
        schema
    }

    /// The property names an object schema (with its `allOf` branches) declares.
    fn declared(&self, schema: &'a Value, names: &mut BTreeSet<&'a str>) {
        let schema = self.resolve(schema);
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            names.extend(props.keys().map(String::as_str));
        }
        for branch in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.declared(branch, names);
        }
    }

    fn check(&self, schema: &'a Value, value: &Value, at: &str) -> Result<(), Violation> {
        self.check_with(schema, value, at, &BTreeSet::new())
    }

    /// `also_known`: property names an enclosing `allOf` declares (not unknown here).
    fn check_with(
        &self,
        schema: &'a Value,
        value: &Value,
        at: &str,
        also_known: &BTreeSet<&'a str>,
    ) -> Result<(), Violation> {
        let schema = self.resolve(schema);
        let Some(s) = schema.as_object() else {
            return Ok(());
        };
        let here = || {
            if at.is_empty() {
                "body".to_owned()
            } else {
                at.to_owned()
            }
        };
        let enumeration = s.get("enum").and_then(Value::as_array);
        if value.is_null() {
            let nullable = s.get("nullable").and_then(Value::as_bool) == Some(true);
            let free = !s.contains_key("type")
                && !s.contains_key("allOf")
                && !s.contains_key("oneOf")
                && !s.contains_key("properties")
                && enumeration.is_none();
            if nullable || free {
                return Ok(());
            }
            let expected = s
                .get("type")
                .and_then(Value::as_str)
                .map(|t| format!(" (expected {t}; the contract does not mark it nullable)"))
                .unwrap_or_else(|| " (the contract does not mark it nullable)".to_owned());
            return Err(Violation::new(
                here(),
                format!("null is not allowed{expected}"),
            ));
        }

        if let Some(branches) = s.get("allOf").and_then(Value::as_array) {
            let mut known = also_known.clone();
            if self.direction == Direction::Request {
                self.declared(schema, &mut known);
            }
            for branch in branches {
                self.check_with(branch, value, at, &known)?;
            }
        }
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
            let mut failures = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if let Err(v) = self.check_with(branch, value, at, also_known) {
                    failures.push(format!("alternative {}: {v}", i + 1));
                }
            }
            let matched = branches.len() - failures.len();
            if matched == 0 {
                return Err(Violation::new(
                    here(),
                    format!(
                        "matches none of the {} alternatives ({})",
                        branches.len(),
                        failures.join("; ")
                    ),
                ));
            }
            if matched > 1 {
                return Err(Violation::new(
                    here(),
                    format!(
                        "matches {matched} of the alternatives, the contract wants exactly one"
                    ),
                ));
            }
        }

        if let Some(ty) = s.get("type").and_then(Value::as_str)
            && !has_type(value, ty)
        {
            return Err(Violation::new(
                here(),
                format!("expected {ty}, got {}", type_name(value)),
            ));
        }
        if let Some(allowed) = enumeration
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(Violation::new(
                here(),
                format!("{value} is not one of {}", list.join(", ")),
            ));
        }
        match value {
            Value::String(text) => self.check_string(s, text, &here())?,
            Value::Number(_) => Self::check_number(s, value, &here())?,
            Value::Array(items) => self.check_array(s, items, at)?,
            Value::Object(map) => self.check_object(s, map, at, also_known)?,
            _ => {}
        }
        Ok(())
    }

    fn check_string(&self, s: &Map<String, Value>, text: &str, at: &str) -> Result<(), Violation> {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            return Err(Violation::new(
                at,
                format!("shorter than minLength {min} ({len} characters)"),
            ));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            return Err(Violation::new(
                at,
                format!("longer than maxLength {max} ({len} characters)"),
            ));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
            && !pattern_matches(pattern, text)
        {
            return Err(Violation::new(
                at,
                format!("{text:?} does not match the pattern {pattern}"),
            ));
        }
        if let Some(format) = s.get("format").and_then(Value::as_str)
            && !format_ok(format, text)
        {
            return Err(Violation::new(
                at,
                format!("{text:?} is not of format {format}"),
            ));
        }
        Ok(())
    }

    fn check_number(s: &Map<String, Value>, value: &Value, at: &str) -> Result<(), Violation> {
        let n = value.as_f64().unwrap_or_default();
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(Violation::new(
                at,
                format!("{value} is below the minimum {min}"),
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(Violation::new(
                at,
                format!("{value} is above the maximum {max}"),
            ));
        }
        Ok(())
    }

    fn check_array(
        &self,
        s: &'a Map<String, Value>,
        items: &[Value],
        at: &str,
    ) -> Result<(), Violation> {
        let here = if at.is_empty() { "body" } else { at };
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Err(Violation::new(
                here,
                format!("fewer than minItems {min} items ({})", items.len()),
            ));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && (items.len() as u64) > max
        {
            return Err(Violation::new(
                here,
                format!("more than maxItems {max} items ({})", items.len()),
            ));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{here}[{i}]"))?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        s: &'a Map<String, Value>,
        map: &Map<String, Value>,
        at: &str,
        also_known: &BTreeSet<&'a str>,
    ) -> Result<(), Violation> {
        for name in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(name) {
                return Err(Violation::new(
                    child(at, name),
                    "required by the contract, missing",
                ));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(props) = props {
            for (name, prop) in props {
                if let Some(v) = map.get(name) {
                    self.check(prop, v, &child(at, name))?;
                }
            }
        }
        let additional = s.get("additionalProperties");
        let forbid = match additional {
            Some(Value::Bool(false)) => true,
            Some(_) => false,
            // Requests: unknown fields are refused wherever the schema lists its fields (an
            // object without `properties` is free-form, e.g. `dailyRoomProperties`).
            None => self.direction == Direction::Request && props.is_some(),
        };
        for (name, v) in map {
            if props.is_some_and(|p| p.contains_key(name)) || also_known.contains(name.as_str()) {
                continue;
            }
            if forbid {
                return Err(Violation::new(
                    child(at, name),
                    "unknown field: the contract does not define it",
                ));
            }
            if let Some(extra) = additional.filter(|a| a.is_object()) {
                self.check(extra, v, &child(at, name))?;
            }
        }
        Ok(())
    }
}

/// What strict mode checks of a request besides its path (see [`Contract::operation`]).
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    /// The raw query string, if any.
    pub query: Option<&'r str>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'r str>,
    /// The body.
    pub body: &'r [u8],
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let media = ct.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json")
            || media.to_ascii_lowercase().ends_with("+json")
    })
}

impl Contract {
    /// The embedded contract.
    pub fn get() -> &'static Contract {
        &CONTRACT
    }

    /// Reads an OpenAPI 3.0 document.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let base = server_path(doc.get("servers")).unwrap_or_default();
        let mut operations = Vec::new();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or("the document has no paths")?;
        for (path_key, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let path_base = server_path(item.get("servers")).unwrap_or_else(|| base.clone());
            for (method, op) in item {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
                ) {
                    continue;
                }
                let op_base = server_path(op.get("servers")).unwrap_or_else(|| path_base.clone());
                operations.push(Operation {
                    id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .unwrap_or(path_key)
                        .to_owned(),
                    method: method.to_ascii_uppercase(),
                    segments: segments(&format!("{op_base}{path_key}")),
                    path_key: path_key.clone(),
                });
            }
        }
        Ok(Self { doc, operations })
    }

    fn op_node(&self, op: &Operation) -> &Value {
        &self.doc["paths"][&op.path_key][op.method.to_ascii_lowercase()]
    }

    /// The operation a request is for, with its path parameters (decoded); the one with the
    /// most literal segments when several match.
    pub fn operation(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Operation, Vec<(String, String)>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method) && op.segments.len() == parts.len())
            .filter(|op| {
                op.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                    Segment::Literal(l) => l == part,
                    Segment::Param(_) => !part.is_empty(),
                })
            })
            .max_by_key(|op| {
                op.segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count()
            })
            .map(|op| {
                let params = op
                    .segments
                    .iter()
                    .zip(&parts)
                    .filter_map(|(seg, part)| match seg {
                        Segment::Param(name) => Some((name.clone(), percent_decode(part, false))),
                        Segment::Literal(_) => None,
                    })
                    .collect();
                (op, params)
            })
    }

    fn validator(&self, direction: Direction) -> Validator<'_> {
        Validator {
            doc: &self.doc,
            direction,
        }
    }

    /// The operation's parameters (the path item's, then its own), `$ref`s resolved.
    fn parameters(&self, op: &Operation) -> Vec<&Value> {
        let v = self.validator(Direction::Request);
        let item = &self.doc["paths"][&op.path_key];
        [item.get("parameters"), self.op_node(op).get("parameters")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| v.resolve(p))
            .collect()
    }

    /// A parameter's text as the JSON value its schema types.
    fn parameter_value(schema: &Value, text: &str) -> Value {
        match schema.get("type").and_then(Value::as_str) {
            Some("integer" | "number") => text
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| Value::String(text.to_owned())),
            Some("boolean") => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text.to_owned()),
            },
            _ => Value::String(text.to_owned()),
        }
    }

    /// Checks a request to `op`: its parameters and its body.
    pub fn check_request(
        &self,
        op: &Operation,
        path_params: &[(String, String)],
        request: &Request<'_>,
    ) -> Result<(), Violation> {
        let v = self.validator(Direction::Request);
        let mut query: Vec<(String, String)> = Vec::new();
        for pair in request
            .query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            query.push((percent_decode(k, true), percent_decode(val, true)));
        }
        for param in self.parameters(op) {
            let (Some(name), Some(location)) = (
                param.get("name").and_then(Value::as_str),
                param.get("in").and_then(Value::as_str),
            ) else {
                continue;
            };
            let schema = param.get("schema").unwrap_or(&Value::Null);
            let given: Vec<&str> = match location {
                "path" => path_params
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect(),
                "query" => query
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect(),
                _ => continue,
            };
            let at = format!("{location} parameter {name}");
            if given.len() > 1 && schema.get("type").and_then(Value::as_str) != Some("array") {
                return Err(Violation::new(at, "given more than once"));
            }
            match given.first() {
                None if param.get("required").and_then(Value::as_bool) == Some(true) => {
                    return Err(Violation::new(at, "required by the contract, missing"));
                }
                None => {}
                Some(text) => v.check(schema, &Self::parameter_value(schema, text), &at)?,
            }
        }

        let node = self.op_node(op);
        let Some(body) = node.get("requestBody").map(|b| v.resolve(b)) else {
            return Ok(());
        };
        let empty = request.body.iter().all(u8::is_ascii_whitespace);
        if empty {
            if body.get("required").and_then(Value::as_bool) == Some(true) {
                return Err(Violation::new(
                    "body",
                    format!("required by the contract for {}, missing", op.id),
                ));
            }
            return Ok(());
        }
        if !is_json(request.content_type) {
            return Err(Violation::new(
                "Content-Type",
                format!(
                    "{} is not application/json, the only media type the contract accepts",
                    request.content_type.unwrap_or("(none)")
                ),
            ));
        }
        let value: Value = serde_json::from_slice(request.body)
            .map_err(|e| Violation::new("body", format!("not valid JSON: {e}")))?;
        let schema = &body["content"]["application/json"]["schema"];
        v.check(schema, &value, "body")
    }

    /// Checks an answer of `op`: a documented status (or an error status with the contract's
    /// `ErrorResponse` body), a JSON content type, and the body against the status's schema.
    pub fn check_response(
        &self,
        op: &Operation,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), Violation> {
        let v = self.validator(Direction::Response);
        let responses = &self.op_node(op)["responses"];
        let documented = responses
            .get(status.to_string())
            .or_else(|| responses.get(format!("{}XX", status / 100)))
            .or_else(|| responses.get("default"))
            .map(|r| v.resolve(r));
        let schema = match documented {
            Some(r) => match r
                .get("content")
                .and_then(|c| c.get("application/json"))
                .and_then(|m| m.get("schema"))
            {
                Some(schema) => schema,
                None => return Ok(()),
            },
            None if status >= 400 => self
                .doc
                .pointer("/components/schemas/ErrorResponse")
                .unwrap_or(&Value::Null),
            None => {
                return Err(Violation::new(
                    "status",
                    format!("{status} is not a status the contract lists for {}", op.id),
                ));
            }
        };
        if !is_json(content_type) {
            return Err(Violation::new(
                "Content-Type",
                format!(
                    "{} for {status}, the contract says application/json",
                    content_type.unwrap_or("(none)")
                ),
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| Violation::new("body", format!("not valid JSON: {e}")))?;
        v.check(schema, &value, "")
    }
}

#[cfg(test)]
mod tests;
