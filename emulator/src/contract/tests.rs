use serde_json::{Value, json};

use super::*;

/// A request to the embedded contract; `Ok` or the violation's text.
fn request(method: &str, path: &str, query: Option<&str>, body: Value) -> Result<(), String> {
    let contract = Contract::get();
    let (op, params) = contract
        .operation(method, path)
        .unwrap_or_else(|| panic!("no operation for {method} {path}"));
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    contract
        .check_request(
            op,
            &params,
            &Request {
                query,
                content_type: Some("application/json"),
                body: &body,
            },
        )
        .map_err(|v| v.to_string())
}

fn response(method: &str, path: &str, status: u16, body: Value) -> Result<(), String> {
    let contract = Contract::get();
    let (op, _) = contract.operation(method, path).expect("an operation");
    contract
        .check_response(
            op,
            status,
            Some("application/json; charset=utf-8"),
            &serde_json::to_vec(&body).unwrap(),
        )
        .map_err(|v| v.to_string())
}

/// A small document of its own, to test one keyword at a time.
fn schema_check(schema: Value, value: Value, direction: Direction) -> Result<(), String> {
    let doc = json!({
        "components": {"schemas": {
            "Named": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "Aged": {"type": "object", "properties": {"age": {"type": "integer"}}},
        }},
        "x-test": schema,
    });
    let v = Validator {
        doc: &doc,
        direction,
    };
    v.check(&doc["x-test"], &value, "")
        .map_err(|v| v.to_string())
}

fn req(schema: Value, value: Value) -> Result<(), String> {
    schema_check(schema, value, Direction::Request)
}

#[test]
fn operations_are_found_by_method_and_path_with_the_operation_servers() {
    let c = Contract::get();
    let id = |m: &str, p: &str| c.operation(m, p).map(|(op, _)| op.id.clone());
    assert_eq!(id("GET", "/v1/agents").as_deref(), Some("listServices"));
    assert_eq!(id("POST", "/v1/agents").as_deref(), Some("createService"));
    assert_eq!(
        id("POST", "/v1/agents/bot").as_deref(),
        Some("updateService")
    );
    assert_eq!(id("GET", "/v1/regions").as_deref(), Some("listRegions"));
    assert_eq!(
        id("DELETE", "/v1/secrets/set-a/KEY").as_deref(),
        Some("deleteSecretFromSet")
    );
    // startService's own server is /v1/public.
    assert_eq!(
        id("POST", "/v1/public/bot/start").as_deref(),
        Some("startService")
    );
    assert_eq!(id("POST", "/v1/bot/start"), None);
    // A literal segment wins over a parameter.
    assert_eq!(
        id("GET", "/v1/agents/bot/sessions").as_deref(),
        Some("getSessions")
    );
    assert_eq!(id("PUT", "/v1/agents"), None);
    let (_, params) = c.operation("GET", "/v1/secrets/my%2Dset").unwrap();
    assert_eq!(params, [("setName".to_owned(), "my-set".to_owned())]);
}

#[test]
fn request_bodies_follow_the_create_and_update_schemas() {
    let create = json!({"serviceName": "voice-starter", "image": "acme/bot:1", "region": "us-west",
        "autoScaling": {"minAgents": 0, "maxAgents": 2}, "krispViva": {"audioFilter": null},
        "agentProfile": "agent-2x", "maxSessionDuration": 600, "secretSet": "s"});
    assert_eq!(request("POST", "/v1/agents", None, create), Ok(()));
    assert_eq!(
        request("POST", "/v1/agents", None, json!({"image": "a"})).unwrap_err(),
        "body.serviceName: required by the contract, missing"
    );
    assert_eq!(
        request("POST", "/v1/agents/bot", None, json!({"enableKrisp": true})).unwrap_err(),
        "body.enableKrisp: unknown field: the contract does not define it"
    );
    assert_eq!(
        request("POST", "/v1/agents/bot", None, json!({"secretSet": null})).unwrap_err(),
        "body.secretSet: null is not allowed (expected string; the contract does not mark it nullable)"
    );
    // `region` is in the create body only.
    assert!(
        request("POST", "/v1/agents/bot", None, json!({"region": "us-west"}))
            .unwrap_err()
            .contains("body.region: unknown field")
    );
    assert!(
        request(
            "POST",
            "/v1/agents/bot",
            None,
            json!({"maxSessionDuration": 59})
        )
        .unwrap_err()
        .contains("below the minimum 60")
    );
    assert!(
        request(
            "POST",
            "/v1/agents/bot",
            None,
            json!({"agentProfile": "agent-9x"})
        )
        .unwrap_err()
        .contains("is not one of")
    );
    assert!(
        request(
            "POST",
            "/v1/agents/bot",
            None,
            json!({"buildId": "not-a-uuid"})
        )
        .unwrap_err()
        .contains("format uuid")
    );
    assert!(
        request(
            "POST",
            "/v1/agents/bot",
            None,
            json!({"autoScaling": {"minAgents": 1.5}})
        )
        .unwrap_err()
        .starts_with("body.autoScaling.minAgents: expected integer")
    );
    assert!(
        request("POST", "/v1/agents", None, json!({"serviceName": "Bad"}))
            .unwrap_err()
            .contains("does not match the pattern")
    );
    // The body is required.
    assert!(
        request("POST", "/v1/agents/bot", None, Value::Null)
            .unwrap_err()
            .starts_with("body: required")
    );
}

#[test]
fn secret_set_bodies_match_exactly_one_alternative() {
    let put = |body| request("PUT", "/v1/secrets/my-set", None, body);
    assert_eq!(
        put(json!({"secrets": [{"secretKey": "A", "secretValue": "v"}], "region": "us-west"})),
        Ok(())
    );
    assert_eq!(
        put(
            json!({"isImagePullSecret": true, "host": "https://index.docker.io/v1/", "secretValue": "x"})
        ),
        Ok(())
    );
    let none = put(json!({"secrets": []})).unwrap_err();
    assert!(
        none.contains("matches none of the 2 alternatives"),
        "{none}"
    );
    assert!(none.contains("minItems 1"), "{none}");
    assert!(
        put(json!({"isImagePullSecret": true, "host": "docker.io", "secretValue": "x"}))
            .unwrap_err()
            .contains("format uri")
    );
    assert!(
        put(json!({"isImagePullSecret": false, "host": "https://x.io", "secretValue": "x"}))
            .unwrap_err()
            .contains("not one of true")
    );
    // The path parameter's own rules.
    assert_eq!(
        request("GET", "/v1/secrets/ab", None, Value::Null).unwrap_err(),
        "path parameter setName: shorter than minLength 3 (2 characters)"
    );
}

#[test]
fn query_parameters_are_typed_and_given_once() {
    assert_eq!(
        request(
            "GET",
            "/v1/agents",
            Some("includeActiveDeployment=true&region=us-west"),
            Value::Null
        ),
        Ok(())
    );
    assert_eq!(
        request("GET", "/v1/agents", Some("region=a&region=b"), Value::Null).unwrap_err(),
        "query parameter region: given more than once"
    );
    assert!(
        request(
            "GET",
            "/v1/agents",
            Some("includeActiveDeployment=yes"),
            Value::Null
        )
        .unwrap_err()
        .contains("expected boolean")
    );
}

#[test]
fn answers_follow_the_response_schemas() {
    let agent = json!({"name": "bot", "region": "us-west", "ready": true,
        "createdAt": "2026-01-01T00:00:00.000Z", "desiredDeploymentId": "d",
        "currentRevision": {"phase": "Active", "health": {"ready": true, "state": "running"}},
        "previousRevision": null, "deployment": null, "somethingNew": 1});
    assert_eq!(
        response("GET", "/v1/agents/bot", 200, agent.clone()),
        Ok(())
    );
    let mut bad = agent.clone();
    bad["reconciledDeploymentId"] = Value::Null;
    assert!(
        response("GET", "/v1/agents/bot", 200, bad)
            .unwrap_err()
            .starts_with("reconciledDeploymentId: null is not allowed")
    );
    let mut bad = agent.clone();
    bad["currentRevision"]["health"]["state"] = json!("Running");
    assert!(
        response("GET", "/v1/agents/bot", 200, bad)
            .unwrap_err()
            .starts_with("currentRevision.health.state: \"Running\" is not one of")
    );
    let mut bad = agent;
    bad["createdAt"] = json!("yesterday");
    assert!(
        response("GET", "/v1/agents/bot", 200, bad)
            .unwrap_err()
            .contains("format date-time")
    );
    assert_eq!(
        response("PUT", "/v1/secrets/abc", 202, json!({"status": "OK"})).unwrap_err(),
        "region: required by the contract, missing"
    );
    assert_eq!(
        response(
            "PUT",
            "/v1/secrets/abc",
            202,
            json!({"status": "OK", "region": "us-west"})
        ),
        Ok(())
    );
    // An error status the operation does not list must still be an ErrorResponse.
    assert_eq!(
        response(
            "GET",
            "/v1/agents/bot",
            401,
            json!({"error": "Unauthorized", "code": "UNAUTHORIZED"})
        ),
        Ok(())
    );
    assert_eq!(
        response(
            "GET",
            "/v1/agents/bot",
            401,
            json!({"error": "Unauthorized"})
        )
        .unwrap_err(),
        "code: required by the contract, missing"
    );
    // A success status it does not list is a violation.
    assert_eq!(
        response("GET", "/v1/agents/bot", 201, json!({})).unwrap_err(),
        "status: 201 is not a status the contract lists for getService"
    );
}

#[test]
fn a_json_answer_needs_a_json_content_type() {
    let c = Contract::get();
    let (op, _) = c.operation("GET", "/v1/regions").unwrap();
    let body = br#"{"regions": []}"#;
    assert_eq!(
        c.check_response(op, 200, Some("application/json"), body),
        Ok(())
    );
    assert_eq!(
        c.check_response(op, 200, Some("text/plain"), body)
            .unwrap_err()
            .at,
        "Content-Type"
    );
}

#[test]
fn keywords_one_at_a_time() {
    // nullable and enum with null.
    let filter = json!({"type": "string", "nullable": true, "enum": ["tel", "pro", null]});
    assert_eq!(req(filter.clone(), Value::Null), Ok(()));
    assert_eq!(req(filter.clone(), json!("tel")), Ok(()));
    assert!(req(filter, json!("max")).is_err());
    // $ref and allOf: fields of every branch are known, each branch's rules apply.
    let both = json!({"allOf": [{"$ref": "#/components/schemas/Named"}, {"$ref": "#/components/schemas/Aged"}]});
    assert_eq!(req(both.clone(), json!({"name": "a", "age": 3})), Ok(()));
    assert_eq!(
        req(both.clone(), json!({"age": 3})).unwrap_err(),
        "name: required by the contract, missing"
    );
    assert_eq!(
        req(both.clone(), json!({"name": "a", "x": 1})).unwrap_err(),
        "x: unknown field: the contract does not define it"
    );
    // Answers may carry fields the contract does not name.
    assert_eq!(
        schema_check(both, json!({"name": "a", "x": 1}), Direction::Response),
        Ok(())
    );
    // A nullable allOf.
    let maybe = json!({"nullable": true, "allOf": [{"$ref": "#/components/schemas/Named"}]});
    assert_eq!(req(maybe.clone(), Value::Null), Ok(()));
    assert!(
        req(
            json!({"allOf": [{"$ref": "#/components/schemas/Named"}]}),
            Value::Null
        )
        .is_err()
    );
    // oneOf wants exactly one.
    let one = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
    assert!(
        req(one.clone(), json!(1))
            .unwrap_err()
            .contains("matches 2 of the alternatives")
    );
    assert_eq!(req(one, json!(1.5)), Ok(()));
    // Arrays.
    let list = json!({"type": "array", "items": {"type": "string", "maxLength": 2}, "minItems": 1, "maxItems": 2});
    assert_eq!(req(list.clone(), json!(["ab"])), Ok(()));
    assert!(
        req(list.clone(), json!([]))
            .unwrap_err()
            .contains("minItems 1")
    );
    assert!(
        req(list.clone(), json!(["a", "b", "c"]))
            .unwrap_err()
            .contains("maxItems 2")
    );
    assert_eq!(
        req(list, json!(["abc"])).unwrap_err(),
        "body[0]: longer than maxLength 2 (3 characters)"
    );
    // Numbers.
    let n = json!({"type": "integer", "minimum": 1, "maximum": 3});
    assert!(
        req(n.clone(), json!(0))
            .unwrap_err()
            .contains("below the minimum")
    );
    assert!(
        req(n.clone(), json!(4))
            .unwrap_err()
            .contains("above the maximum")
    );
    assert_eq!(req(n.clone(), json!(2.0)), Ok(()));
    assert!(
        req(n, json!("2"))
            .unwrap_err()
            .contains("expected integer, got a string")
    );
    // Strings: minLength, pattern, formats.
    assert!(req(json!({"type": "string", "minLength": 2}), json!("a")).is_err());
    assert!(req(json!({"type": "string", "pattern": "^a+$"}), json!("ab")).is_err());
    assert_eq!(
        req(json!({"type": "string", "pattern": "^a+$"}), json!("aa")),
        Ok(())
    );
    let ts = json!({"type": "string", "format": "date-time"});
    assert_eq!(req(ts.clone(), json!("2026-07-31T10:00:00.123Z")), Ok(()));
    assert_eq!(req(ts.clone(), json!("2026-07-31T10:00:00+02:00")), Ok(()));
    assert!(req(ts.clone(), json!("2026-07-31")).is_err());
    assert!(req(ts, json!("2026-07-31 10:00:00")).is_err());
    let uuid = json!({"type": "string", "format": "uuid"});
    assert_eq!(
        req(uuid.clone(), json!("123e4567-e89b-12d3-a456-426614174000")),
        Ok(())
    );
    assert!(req(uuid, json!("123e4567e89b12d3a456426614174000")).is_err());
    let uri = json!({"type": "string", "format": "uri"});
    assert_eq!(
        req(uri.clone(), json!("https://index.docker.io/v1/")),
        Ok(())
    );
    assert!(req(uri.clone(), json!("index.docker.io")).is_err());
    assert!(req(uri, json!("https://a b")).is_err());
    // additionalProperties as a schema, and a free-form object.
    let fields = json!({"type": "object", "additionalProperties": {"type": "string"}});
    assert_eq!(req(fields.clone(), json!({"a": "b"})), Ok(()));
    assert!(req(fields, json!({"a": 1})).is_err());
    assert_eq!(
        req(json!({"type": "object"}), json!({"anything": [1]})),
        Ok(())
    );
    // A type mismatch names the path.
    assert_eq!(
        req(
            json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "boolean"}}}}}),
            json!({"a": {"b": "yes"}})
        )
        .unwrap_err(),
        "a.b: expected boolean, got a string"
    );
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
    assert_eq!(percent_decode("a+b%", false), "a+b%");
    assert_eq!(percent_decode("%zz", false), "%zz");
}
