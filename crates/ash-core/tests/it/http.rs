//! HTTP connections: `kind = "http"` tools (path placeholders, query, body, the `response`
//! pointer, error statuses) and a command tool reaching the connection through the runtime's
//! endpoint, against a real HTTP API on loopback that demands credentials. No secret reaches
//! the tool process, an event or the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use ash_core::MemoryStore;
use ash_protocol::{ActionOutput, EventBody};
use ash_test_support::{Reply, Turn};
use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::{Harness, bodies, read_until};

const SECRET: &str = "shop-api-secret-9931";

/// The shop: every route wants `Authorization: Bearer SECRET`; it echoes what it got.
async fn shop() -> String {
    fn authorized(headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {SECRET}"))
    }
    let app = axum::Router::new()
        .route(
            "/v1/orders/{id}",
            get(|Path(id): Path<String>, headers: HeaderMap, uri: axum::http::Uri| async move {
                if !authorized(&headers) {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "who are you"})));
                }
                if id == "missing" {
                    return (StatusCode::NOT_FOUND, Json(json!({"error": "no order missing"})));
                }
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                (
                    StatusCode::OK,
                    Json(json!({
                        "order": {"id": id, "query": uri.query(), "path": uri.path()},
                        "seen": auth,
                    })),
                )
            }),
        )
        .route(
            "/v1/orders",
            post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                if !authorized(&headers) {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "who are you"})));
                }
                (StatusCode::CREATED, Json(json!({"created": body})))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

fn files(base: &str) -> String {
    format!(
        r#"//- agent/connections/shop.toml
kind = "http"
base_url = "{base}"

[auth]
kind = "bearer"
token = "${{SHOP_TOKEN}}"

[policy]
timeout_ms = 5000
//- agent/connections/shop-api.toml
kind = "openapi"
spec = "../lib/shop.openapi.yaml"
base_url = "{base}"

[auth]
kind = "bearer"
token = "${{SHOP_TOKEN}}"

[operations]
allow = ["getOrder", "createOrder"]
namespace = "shop"
//- agent/lib/shop.openapi.yaml
openapi: 3.0.3
info: {{title: Shop}}
servers: [{{url: "https://shop.invalid/v1"}}]
paths:
  /orders/{{id}}:
    get:
      operationId: getOrder
      summary: Look up an order.
      parameters:
        - {{name: id, in: path, required: true, schema: {{type: string}}}}
        - {{name: expand, in: query, schema: {{type: string}}}}
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json:
            schema: {{type: object, properties: {{item: {{type: string}}}}, required: [item]}}
//- agent/tools/get-order.toml
kind = "http"
description = "Look up an order."
connection = "shop"
method = "GET"
path = "/orders/{{id}}"
response = "/order"

[input_schema]
type = "object"
required = ["id"]
properties.id = {{ type = "string" }}
properties.expand = {{ type = "string" }}
//- agent/tools/place-order.toml
kind = "http"
description = "Place an order."
connection = "shop"
method = "POST"
path = "/orders"

[input_schema]
type = "object"
properties.item = {{ type = "string" }}
//- agent/tools/no-grant.toml
description = "Declares no connection."
command = ["bash", "-c", "printf '{{\"url\": \"%s\"}}' \"${{ASH_CONNECTIONS_URL:-none}}\""]
//- agent/tools/via-runtime.toml
description = "Fetches order 7 through the runtime's connection endpoint and shows its environment."
connections = ["shop"]
command = ["bash", "-c", """
answer=$(curl -s -H "Authorization: Bearer $ASH_CONNECTIONS_TOKEN" -d '{{"method":"GET","path":"/orders/7"}}' "$ASH_CONNECTIONS_URL/connections/shop/request")
denied=$(curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer guess' "$ASH_CONNECTIONS_URL/connections")
escape=$(curl -s -H "Authorization: Bearer $ASH_CONNECTIONS_TOKEN" -d '{{"path":"/../../etc"}}' "$ASH_CONNECTIONS_URL/connections/shop/request")
other=$(curl -s -o /dev/null -w '%{{http_code}}' -H "Authorization: Bearer $ASH_CONNECTIONS_TOKEN" -d '{{"path":"/orders/1"}}' "$ASH_CONNECTIONS_URL/connections/shop-api/request")
files=$(cat "$HOME"/* /proc/self/environ 2>/dev/null | tr '\\0' '\\n')
printf '{{"answer": %s, "denied": "%s", "other": "%s", "escape": %s, "env": %s}}' "$answer" "$denied" "$other" "$escape" "$(env | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read() + sys.argv[1]))' "$files")"
"""]
"#
    )
}

fn outputs(events: &[ash_protocol::Event]) -> Vec<(String, Value, Option<String>)> {
    bodies(events, "action.result")
        .into_iter()
        .map(|b| match b {
            EventBody::ActionResult(r) => {
                let ActionOutput::ToolResult { output, .. } = &r.result else { unreachable!() };
                (r.call_id.clone(), output.clone(), r.error.as_ref().map(|e| e.message.clone()))
            }
            _ => unreachable!(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_tools_and_a_command_tool_reach_an_authenticated_api_without_seeing_its_secret() {
    let base = shop().await;
    let env = BTreeMap::from([("SHOP_TOKEN".to_owned(), SECRET.to_owned())]);
    let h = Harness::with_env(&files(&base), &env, Arc::new(MemoryStore::new()), |_| {}).await;
    h.server
        .push(Reply::Turn(
            Turn::text("Working.")
                .then_tool_call("h1", "get_order", r#"{"id":"a b ü","expand":"items"}"#)
                .then_tool_call("h2", "place_order", r#"{"item":"tea"}"#)
                .then_tool_call("h3", "get_order", r#"{"id":"missing"}"#)
                .then_tool_call("h4", "get_order", r#"{"id":".."}"#)
                .then_tool_call("h5", "via_runtime", "{}")
                .then_tool_call("o1", "shop__get_order", r#"{"id":"9","expand":"items"}"#)
                .then_tool_call("o2", "shop__create_order", r#"{"body":{"item":"cake"}}"#)
                .then_tool_call("o3", "shop__create_order", r#"{"body":{}}"#)
                .then_tool_call("n1", "no_grant", "{}"),
        ))
        .push(Reply::Turn(Turn::text("Done.")));
    let run = h.send("orders", None).await;
    let events = read_until(&h.engine, &run.run_id, 0, &["session.waiting"]).await;
    let out = outputs(&events);
    assert_eq!(
        out[..2].to_vec(),
        [
            (
                "h1".to_owned(),
                json!({"id": "a b ü", "query": "expand=items", "path": "/v1/orders/a%20b%20%C3%BC"}),
                None
            ),
            (
                "h2".to_owned(),
                json!({"status": 201, "headers": {"content-type": "application/json"}, "body": {"created": {"item": "tea"}}}),
                None
            ),
        ]
    );
    assert_eq!(
        out[2].2.as_deref(),
        Some(r#"`shop` answered HTTP 404: {"error":"no order missing"}"#)
    );
    assert_eq!(
        out[3].2.as_deref(),
        Some("tool `get_order`: `id` may not contain `/` or `\\`, nor be `.` or `..`")
    );
    let via = &out[4].1;
    assert_eq!(out[4].2, None, "{via}");
    assert_eq!(via["answer"]["status"], 200);
    assert_eq!(via["answer"]["body"]["order"]["id"], "7");
    // The API echoed the credential: what reaches the tool is redacted.
    assert_eq!(via["answer"]["body"]["seen"], "Bearer <redacted>");
    assert_eq!(via["denied"], "401");
    assert_eq!(via["other"], "403", "a connection the tool does not declare");
    assert_eq!(out[8].1, json!({"url": "none"}), "a tool declaring no connection gets no endpoint");
    assert_eq!(
        via["escape"]["error"],
        "path `/../../etc` may not climb out of the base URL with `..`"
    );
    // OpenAPI operations: parameters where the document puts them, the body as the body.
    assert_eq!(
        out[5].1["body"]["order"],
        json!({"id": "9", "query": "expand=items", "path": "/v1/orders/9"})
    );
    assert_eq!(
        out[6].1,
        json!({"status": 201, "headers": {"content-type": "application/json"}, "body": {"created": {"item": "cake"}}})
    );
    assert_eq!(
        out[7].2.as_deref(),
        Some(
            r#"the input of `shop__create_order` does not match its schema: at `/body`: "item" is a required property"#
        )
    );
    let env_text = via["env"].as_str().unwrap();
    assert!(env_text.contains("ASH_CONNECTIONS_URL=http://"), "{env_text}");
    assert!(!env_text.contains(SECRET), "the secret reached the tool: {env_text}");
    let everything = serde_json::to_string(&events).unwrap()
        + &serde_json::to_string(&h.server.requests().iter().map(|r| &r.body).collect::<Vec<_>>())
            .unwrap();
    assert!(!everything.contains(SECRET), "the secret reached an event or the model");
}
