//! One fixture per slot, in the nested and flat layouts.

use insta::assert_snapshot;
use serde_json::json;

use crate::{check, load, surface_json};

#[test]
fn the_weather_example_loads_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/weather-agent");
    let loaded = ash_spec::load(&dir, &crate::options()).unwrap();
    assert_snapshot!("weather_example", crate::render(&loaded));
}

#[test]
fn flat_layout_reads_the_directory_itself() {
    assert_snapshot!(check(
        r#"
//- agent.toml
name = "flat"
model = "anthropic/claude-sonnet-4-5"
//- system.md
Be brief.
//- Cargo.toml
[package]
name = "unrelated"
//- tools/echo.toml
description = "Echo the input."
command = ["cat"]
"#
    ));
}

#[test]
fn nested_layout_wins_and_warns_about_stray_root_files() {
    assert_snapshot!(check(
        r#"
//- agent.toml
name = "ignored"
//- agent/agent.toml
name = "nested"
//- agent/system.md
Hello.
//- agent/notes.txt
scratch
//- agent/channels/slack.toml
x = 1
"#
    ));
}

#[test]
fn agent_toml_every_key() {
    let fx = ash_test_support::Fixture::new(
        r#"
//- agent/agent.toml
name = "ops-agent"
description = "Operates things."
model = "local/qwen2.5"

[metadata]
team = "platform"

[network]
ip_allow_list = ["127.0.0.1", "10.1.2.3/8", "::1", "fd00::/8"]
trusted_proxies = ["10.0.0.2", "::ffff:10.0.0.3"]

[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${ASH_BASIC_PASSWORD}"

[[auth.strategies]]
kind = "jwt-hmac"
issuer = "https://internal.example"
audiences = ["ops-agent"]
subjects = ["worker:*"]
algorithm = "HS512"
secret = "${ASH_HMAC_SECRET}"

[[auth.strategies]]
kind = "jwt-ecdsa"
issuer = "https://idp.example"
audiences = ["ops-agent"]
public_key = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"
clock_skew_seconds = 30

[[auth.strategies]]
kind = "oidc"
issuer = "https://accounts.example"
audiences = ["ops-agent"]
discovery_url = "https://accounts.example/.well-known/openid-configuration"

[limits]
max_steps_per_turn = 24
max_input_tokens_per_session = 2000000
max_output_tokens_per_session = 100000
max_cost_usd_per_session = 2.5
session_timeout_ms = 86400000

[prices."local/qwen2.5"]
input = 0.05
output = 0.2
cache_read = 0.01

[providers.local]
api = "openai"
base_url = "http://127.0.0.1:11434/v1"
api_key_env = "LOCAL_KEY"
//- agent/system.md
You operate things.
"#,
    );
    let loaded = load(&fx);
    assert_eq!(crate::diagnostics(&loaded), "");
    let surface = surface_json(&loaded);
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "network": surface["network"],
        "auth": surface["auth"],
        "limits": surface["limits"],
        "providers": surface["providers"],
        "metadata": surface["metadata"],
    }))
    .unwrap();
    // Secrets appear as their templates, never their values.
    assert!(!json.contains("top-secret-password") && !json.contains("0123456789abcdef"));
    assert_snapshot!(json);
}

#[test]
fn agent_toml_bad_values_are_all_reported() {
    assert_snapshot!(check(
        r#"
//- agent/agent.toml
name = "Bad Name"
description = ""
model = "gpt-4"
colour = "blue"

[network]
ip_allow_list = ["localhost", "10.0.0.0/33"]
trusted_proxies = ["proxy.internal"]
ip_allowlist = ["10.0.0.0/8"]

[auth]
strategy = "typo"

[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "hunter2"
realm = "ignored would be open"

[[auth.strategies]]
kind = "oidc"
issuer = "http://idp.example"
audiences = ["a"]
discovery_url = "http://idp.example/.well-known/openid-configuration"
claims = { role = ["admin"] }

[[auth.strategies]]
kind = "jwt-hmac"
issuer = "x"
audiences = []
secret = "${MISSING_SECRET}"

[[auth.strategies]]
kind = "magic"

[limits]
max_steps_per_turn = 0
max_cost_usd_per_session = -1
session_timeout_ms = "forever"

[providers.custom]
api = "grpc"
api_key_env = "not a var"
//- agent/system.md
Hi.
"#
    ));
}

#[test]
fn access_control_mistakes_that_would_open_the_agent_are_errors() {
    assert_snapshot!(check(
        r#"
//- agent/agent.toml
name = "guarded"
[Network]
ip_allow_list = ["10.0.0.0/8"]

[network]
ip_allow_list = []
forwarded_header = "x-forwarded-for"

[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = ""

[[auth.strategies]]
kind = "jwt-hmac"
issuer = "https://ci.example"
audiences = ["guarded"]
subjects = []
secret = "short"

[[auth.strategies]]
kind = "oidc"
issuer = "https://idp.example"
audiences = ["guarded"]
discovery_url = "http://127.0.0.1:80@idp.example/.well-known/openid-configuration"
//- agent/system.md
Hi.
//- agent/subagents/helper/agent.toml
description = "Helps."
[auth]
strategies = []
//- agent/subagents/helper/system.md
Help.
"#
    ));
}

#[test]
fn prompt_layers_are_ordered_by_file_name_and_aliases_work() {
    assert_snapshot!(check(
        r#"
//- agent/instructions.md
Base prompt.
//- agent/instructions/20-tone.md
Be warm.
//- agent/instructions/10-facts.md
Facts first.
//- agent/instructions/b.md
Layer b.
//- agent/instructions/notes.txt
not a layer
//- agent/instructions/deeper/x.md
not read
"#
    ));
}

#[test]
fn both_prompt_aliases_is_an_error() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
One.
//- agent/instructions.md
Two.
//- agent/system/a.md
A.
//- agent/instructions/b.md
B.
"#
    ));
}

#[test]
fn skills_flat_and_packaged() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/skills/get-weather.md
---
description: Use the weather tool first.
---
Call `get_weather`.
//- agent/skills/no-frontmatter.md
```sh
echo code is skipped
```
# Summarise the thread
Then answer.
//- agent/skills/empty.md
//- agent/skills/pdf-forms/SKILL.md
---
name: pdf-forms
description: Fill PDF forms.
license: MIT
metadata:
  owner: docs-team
allowed-tools: bash
---
Run scripts/fill.py.
//- agent/skills/pdf-forms/scripts/fill.py
print("fill")
//- agent/skills/pdf-forms/references/spec.md
The spec.
//- agent/skills/not-a-skill/readme.md
no SKILL.md here
//- agent/skills/mismatch/SKILL.md
---
name: other
description: Wrong name.
---
Body.
//- agent/skills/nodesc/SKILL.md
Body without frontmatter.
//- agent/skills/Bad_Name.md
x
"#
    ));
}

#[test]
fn command_tools() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/tools/Get-Forecast.toml
description = "Forecast."
command = ["./forecast.sh", "--days", "3"]
timeout_ms = 5000
sandbox = "repo-shell"
//- agent/tools/forecast.sh
echo {}
//- agent/tools/explicit.toml
name = "lookup_city"
description = "Look up a city."
command = ["python3", "../lib/lookup.py"]
[input_schema]
type = "object"
properties.city = { type = "string", minLength = 1 }
required = ["city"]
//- agent/lib/lookup.py
print("{}")
//- agent/sandboxes/repo-shell.toml
description = "Repo shell."
"#
    ));
}

#[test]
fn broken_tools_are_all_reported() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/tools/bad-schema.toml
description = "Bad schema."
command = ["true"]
[input_schema]
type = "object"
properties.city = { type = "strnig" }
//- agent/tools/not-object.toml
description = "Array input."
command = ["true"]
input_schema = { type = "array" }
//- agent/tools/bad-regex.toml
description = "Bad pattern."
command = ["true"]
input_schema = { type = "object", properties = { x = { type = "string", pattern = "([" } } }
//- agent/tools/missing.toml
timeout_ms = 0
//- agent/tools/paths.toml
description = "Paths."
command = ["sh", "../lib/nope.sh", "../../../../etc/passwd"]
sandbox = "nowhere"
//- agent/tools/empty-argv.toml
description = "Nothing to run."
command = []
//- agent/tools/bad-name.toml
name = "Bad-Name"
description = "x"
command = ["true"]
//- agent/tools/9lives.toml
description = "x"
command = ["true"]
//- agent/tools/kind.toml
kind = "grpc"
//- agent/tools/nested/x.toml
description = "x"
//- agent/tools/README.txt
notes
"#
    ));
}

#[test]
fn http_tools_call_http_connections() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/connections/shop.toml
kind = "http"
base_url = "https://shop.example/api"
headers = { x-client = "ash" }
[auth]
kind = "bearer"
token = "${MCP_TOKEN}"
//- agent/connections/docs.toml
kind = "mcp"
[transport]
type = "streamable-http"
url = "https://docs.example/mcp"
//- agent/tools/order.toml
kind = "http"
description = "Look up an order."
connection = "shop"
path = "/orders/{id}"
[input_schema]
type = "object"
required = ["id"]
properties.id = { type = "string" }
//- agent/tools/bad-http.toml
kind = "http"
description = "Broken."
connection = "docs"
method = "FETCH"
path = "orders/{missing}"
//- agent/tools/unknown-conn.toml
kind = "http"
description = "Broken."
connection = "nope"
path = "/x/{id}"
"#
    ));
}

#[test]
fn sandboxes() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/sandboxes/repo-shell.toml
description = "Repo shell."
bootstrap = ["mkdir -p repo"]
on_session = ["touch .session-ready"]
//- agent/sandboxes/build-box.toml
backend = "podman"
image = "debian:bookworm-slim"
timeout_ms = 1200000
//- agent/sandboxes/named.toml
name = "other"
//- agent/sandboxes/bad-backend.toml
backend = "vm"
//- agent/sandboxes/no-image.toml
backend = "docker"
//- agent/sandboxes/empty-cmd.toml
bootstrap = [""]
//- agent/sandboxes/py.toml
network = ["pypi.org", "files.pythonhosted.org"]
[limits]
memory_mb = 1024
pids = 64
//- agent/sandboxes/open.toml
network = "full"
[limits]
output_kb = 16
//- agent/sandboxes/bad-network.toml
network = "some"
//- agent/sandboxes/bad-host.toml
network = ["exa mple.com"]
//- agent/sandboxes/bad-limits.toml
[limits]
memory_mb = 0
swap_mb = 10
//- agent/sandboxes/local-allow.toml
backend = "local"
network = ["example.com"]
"#
    ));
}

#[test]
fn sandbox_template_keys_follow_what_shapes_the_template() {
    let a = crate::check_spec(
        "//- agent/sandboxes/s.toml\nbootstrap = [\"mkdir repo\"]\non_session = [\"a\"]\n",
    );
    let b = crate::check_spec(
        "//- agent/sandboxes/s.toml\nbootstrap = [\"mkdir repo\"]\non_session = [\"b\"]\ndescription = \"d\"\n",
    );
    let c = crate::check_spec("//- agent/sandboxes/s.toml\nbootstrap = [\"mkdir repo2\"]\n");
    let d = crate::check_spec(
        "//- agent/sandboxes/s.toml\nbootstrap = [\"mkdir repo\"]\nnetwork = [\"pypi.org\"]\n",
    );
    let e = crate::check_spec(
        "//- agent/sandboxes/s.toml\nbootstrap = [\"mkdir repo\"]\n[limits]\nmemory_mb = 64\n",
    );
    let key = |spec: &ash_spec::AgentSpec| spec.root().sandboxes[0].template_key();
    assert_eq!(key(&a), key(&b));
    for other in [&c, &d, &e] {
        assert_ne!(key(&a), key(other));
    }
}

#[test]
fn connections_mcp_and_http() {
    let fx = ash_test_support::Fixture::new(
        r#"
//- agent/system.md
Hi.
//- agent/connections/snowflake.toml
kind = "mcp"
[transport]
type = "streamable-http"
url = "https://mcp.example/snowflake"
[auth]
kind = "bearer"
token = "${MCP_TOKEN}"
[policy]
timeout_ms = 30000
retry_attempts = 1
[tools]
mode = "allow"
allow = ["query", "explore"]
namespace = "snowflake"
//- agent/connections/local-files.toml
kind = "mcp"
[transport]
type = "stdio"
command = ["../lib/fs-server", "--root", "."]
[tools]
allow = ["read_file"]
//- agent/lib/fs-server
#!/bin/sh
//- agent/connections/crm.toml
kind = "http"
base_url = "https://crm.example"
[auth]
kind = "api-key"
header = "x-api-key"
value = "${MCP_TOKEN}"
//- agent/connections/sheets.toml
kind = "http"
base_url = "https://sheets.example"
[auth]
kind = "service-account"
//- agent/connections/bad.toml
kind = "mcp"
[transport]
type = "websocket"
[tools]
mode = "deny"
allow = ["ok", "not ok"]
"#,
    );
    let loaded = load(&fx);
    let surface = surface_json(&loaded);
    let rendered = format!(
        "{}\n{}",
        crate::render(&loaded),
        serde_json::to_string_pretty(&surface["connections"]).unwrap()
    );
    assert!(!rendered.contains("tok-very-secret"));
    assert_snapshot!(rendered);
}

#[test]
fn schedules() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/schedules/daily-digest.md
---
cron: "0 9 * * 1-5"
---
Summarise yesterday's alerts.
//- agent/schedules/billing/sweep.md
---
cron: "*/15 * * * *"
---
Sweep unpaid invoices.
//- agent/schedules/bad-cron.md
---
cron: "0 9 * *"
---
Never parsed.
//- agent/schedules/never.md
---
cron: "0 0 31 2 *"
---
February 31st.
//- agent/schedules/no-cron.md
---
title: x
---
No cron.
//- agent/schedules/no-prompt.md
---
cron: "@daily"
---
"#
    ));
}

#[test]
fn subagents_recurse_with_their_own_slots() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Root.
//- agent/connections/shop.toml
kind = "http"
base_url = "https://shop.example"
//- agent/subagents/researcher/agent.toml
description = "Researches a topic and reports sources."
//- agent/subagents/researcher/system.md
You research.
//- agent/subagents/researcher/tools/search.toml
description = "Search."
command = ["sh", "../lib/search.sh"]
//- agent/subagents/researcher/lib/search.sh
echo '{}'
//- agent/subagents/researcher/tools/orders.toml
kind = "http"
description = "Orders via the root's connection."
connection = "shop"
path = "/orders"
//- agent/subagents/researcher/sandboxes/scratch.toml
description = "Scratch space."
//- agent/subagents/researcher/subagents/summariser/agent.toml
description = "Summarises findings."
model = "openai/gpt-4.1-nano"
//- agent/subagents/researcher/subagents/summariser/skills/tldr.md
Write a TL;DR.
//- agent/subagents/quiet/system.md
No agent.toml.
//- agent/subagents/bad-slots/agent.toml
description = "Has root-only slots."
[network]
ip_allow_list = ["127.0.0.1"]
//- agent/subagents/bad-slots/schedules/x.md
---
cron: "@daily"
---
x
//- agent/subagents/bad-slots/connections/c.toml
kind = "http"
base_url = "https://x.example"
//- agent/subagents/Bad_Id/agent.toml
description = "x"
//- agent/subagents/stray.md
not a package
"#
    ));
}

#[test]
fn module_files_show_the_equivalent_toml() {
    let fx = ash_test_support::Fixture::new(
        r#"
//- agent/agent.ts
export default defineAgent({ model: "openai/gpt-5.4-mini" });
//- agent/system.md
Hi.
//- agent/tools/get-weather.ts
export default defineTool({});
//- agent/sandboxes/repo-shell.ts
export default defineSandbox({});
//- agent/lib/weather/client.ts
export const x = 1;
"#,
    );
    let loaded = load(&fx);
    let full: String = loaded.diagnostics().iter().map(ToString::to_string).collect();
    assert_snapshot!(full);
}

#[test]
fn openapi_connections_and_their_operations() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/lib/shop.yaml
openapi: 3.1.0
info: {title: Shop}
servers: [{url: "https://shop.example/v1"}]
paths:
  /orders/{id}:
    get:
      operationId: getOrder
      summary: Look up an order.
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
    delete:
      operationId: deleteOrder
      parameters:
        - {name: id, in: path, required: true}
        - {name: session, in: cookie, required: true}
//- agent/lib/swagger.json
{"swagger": "2.0", "paths": {}}
//- agent/connections/shop.toml
kind = "openapi"
spec = "../lib/shop.yaml"
[operations]
allow = ["getOrder"]
//- agent/connections/bad-ops.toml
kind = "openapi"
spec = "../lib/shop.yaml"
base_url = "https://other.example/api"
[operations]
allow = ["getOrder", "deleteOrder", "listOrders"]
namespace = "BadName"
//- agent/connections/old.toml
kind = "openapi"
spec = "../lib/swagger.json"
[operations]
allow = []
//- agent/connections/outside.toml
kind = "openapi"
spec = "../../../etc/passwd"
[operations]
allow = ["x"]
//- agent/connections/no-ops.toml
kind = "openapi"
spec = "../lib/shop.yaml"
//- agent/connections/remote.toml
kind = "openapi"
spec_url = "https://shop.example/openapi.json"
[operations]
allow = ["getOrder"]
"#
    ));
}

#[test]
fn approvals_parse_and_decide_on_the_input() {
    let spec = crate::check_spec(
        r#"//- agent/tools/deploy.toml
description = "Deploy."
command = ["true"]
[input_schema]
type = "object"
[approval]
when = [
  { pointer = "/branch", equals = "main" },
  { pointer = "/command", matches = "^rm " },
  { pointer = "/amount", above = 100 },
]
//- agent/tools/always.toml
description = "Always asks."
command = ["true"]
approval = "required"
//- agent/tools/never.toml
description = "Never asks."
command = ["true"]
approval = "never"
//- agent/sandboxes/box.toml
approval = "required"
"#,
    );
    let tool = |name: &str| spec.root().tools.iter().find(|t| t.name == name).unwrap();
    let deploy = &tool("deploy").approval;
    let cases = [
        (json!({"branch": "main"}), Some("/branch is \"main\"")),
        (json!({"branch": "dev"}), None),
        (json!({"command": "rm -rf /"}), Some("/command matches `^rm `")),
        (json!({"command": "ls; rm x"}), None),
        (json!({"amount": 100}), None),
        (json!({"amount": 100.5}), Some("/amount is 100.5, above 100")),
        (json!({"amount": "1000"}), None),
        (json!({}), None),
    ];
    for (input, expected) in cases {
        assert_eq!(deploy.required(&input).as_deref(), expected, "{input}");
    }
    assert!(tool("always").approval.required(&json!({})).is_some());
    assert_eq!(tool("never").approval, ash_spec::Approval::Never);
    assert_eq!(spec.root().sandboxes[0].approval, ash_spec::Approval::Always);
}

#[test]
fn broken_approvals_are_reported() {
    assert_snapshot!(check(
        r#"
//- agent/system.md
Hi.
//- agent/tools/word.toml
description = "Bad word."
command = ["true"]
approval = "sometimes"
//- agent/tools/empty.toml
description = "No rules."
command = ["true"]
[approval]
when = []
//- agent/tools/two-tests.toml
description = "Two tests."
command = ["true"]
[approval]
when = [{ pointer = "/a", equals = 1, above = 2 }]
//- agent/tools/bad-pointer.toml
description = "Bad pointer."
command = ["true"]
[approval]
when = [{ pointer = "a", equals = 1 }]
//- agent/tools/bad-regex.toml
description = "Bad regex."
command = ["true"]
[approval]
when = [{ pointer = "/a", matches = "(" }]
//- agent/tools/typo.toml
description = "Typo."
command = ["true"]
[approval]
when = [{ pointer = "/a", equal = 1 }]
unless = []
"#
    ));
}

#[test]
fn the_readme_sandbox_example_loads_clean() {
    let readme = include_str!("../../../../README.md");
    let start = readme.find("# agent/sandboxes/py.toml").expect("the README shows a sandbox");
    let block = &readme[start..];
    let block = &block[block.find('\n').unwrap() + 1..block.find("```").unwrap()];
    let spec = crate::check_spec(&format!("//- agent/sandboxes/py.toml\n{block}"));
    let sandbox = &spec.root().sandboxes[0];
    assert_eq!(sandbox.limits.memory_mb, Some(1024));
    assert!(sandbox.approval.required(&json!({"command": "rm -rf work"})).is_some());
    assert!(sandbox.approval.required(&json!({"command": "ls"})).is_none());
}
