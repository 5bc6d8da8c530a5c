//! Inbound auth end to end: `ash start` with every strategy and an allow list, asked over real
//! HTTP on IPv4 and IPv6 loopback; the caller reaching authored tools through `ASH_SESSION`;
//! a real OpenID provider (`oidc-provider` from npm) issuing RS256 and ES256 access tokens;
//! agents using what the runtime does not execute; `ash dev URL` with credentials.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use ash_protocol::{Event, EventBody};
use ash_test_support::{FakeModelServer, Fixture, Reply, Turn};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::serve::Server;
use crate::{ash_env, stderr};

const PREFIX: &str = "/.well-known/ash/v1";
const HMAC_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";
const PASSWORD: &str = "correct horse battery";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn jwt(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature))
}

fn hs256(claims: &Value) -> String {
    jwt(&json!({"alg": "HS256", "typ": "JWT"}), claims, |input| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
        aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
    })
}

fn es256(key: &EcdsaKeyPair, claims: &Value) -> String {
    jwt(&json!({"alg": "ES256"}), claims, |input| {
        key.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec()
    })
}

fn pem(key: &EcdsaKeyPair) -> String {
    let der = key.public_key().as_der().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn claims(iss: &str, sub: &str, aud: &str) -> Value {
    json!({"iss": iss, "sub": sub, "aud": aud, "exp": now() + 300, "iat": now(), "team": "infra"})
}

const GUARDED: &str = r#"
[network]
ip_allow_list = ["127.0.0.1", "::1"]

[[auth.strategies]]
kind = "http-basic"
username = "ops"
password = "${OPS_PASSWORD}"

[[auth.strategies]]
kind = "jwt-hmac"
issuer = "https://ci.example"
audiences = ["guarded"]
subjects = ["worker:*"]
secret = "${HMAC_SECRET}"

[[auth.strategies]]
kind = "jwt-ecdsa"
issuer = "https://idp.example"
audiences = ["guarded", "other"]
algorithm = "ES256"
public_key = "${EC_PUBLIC_KEY}"
clock_skew_seconds = 0
//- agent/tools/whoami.toml
description = "Tells who called."
command = ["sh", "-c", "cat >/dev/null; printf '%s' \"$ASH_SESSION\""]
[input_schema]
type = "object"
"#;

/// An agent answering with the fake model: `toml` goes into agent.toml, `files` adds
/// `//- path` sections.
fn fixture(model: &FakeModelServer, toml: &str, files: &str) -> Fixture {
    Fixture::new(&format!(
        "//- agent/agent.toml\nname = \"guarded\"\nmodel = \"openai/gpt-test\"\n{toml}\n\
         [providers.openai]\nbase_url = \"{}\"\n//- agent/system.md\nBe brief.\n{files}",
        model.base_url()
    ))
}

fn guarded_agent(model: &FakeModelServer) -> Fixture {
    let (toml, files) = GUARDED.split_once("//- ").unwrap();
    fixture(model, toml, &format!("//- {files}"))
}

fn start_guarded(fx: &Fixture, ec: &EcdsaKeyPair) -> Server {
    let key = pem(ec);
    Server::start_with(
        fx.path(),
        &fx.join("state/ash.db"),
        &["--host", "::"],
        &[("OPS_PASSWORD", PASSWORD), ("HMAC_SECRET", HMAC_SECRET), ("EC_PUBLIC_KEY", &key)],
    )
}

/// One request and what it must get.
struct Case {
    name: &'static str,
    v6: bool,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: Option<&'static str>,
}

async fn answer(
    port: u16,
    v6: bool,
    path: &str,
    headers: &[(&'static str, String)],
) -> (u16, Value, Vec<String>) {
    let host = if v6 { "[::1]" } else { "127.0.0.1" };
    let mut request = reqwest::Client::new().get(format!("http://{host}:{port}{PREFIX}{path}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, challenges)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_strategy_and_fault_over_real_http_on_both_loopbacks() {
    let model = FakeModelServer::start().await;
    let fx = guarded_agent(&model);
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let other_ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let server = start_guarded(&fx, &ec);
    let port = server.port();
    let auth = |v: String| vec![("authorization", v)];
    let bearer = |t: String| auth(format!("Bearer {t}"));
    let hs_ok = hs256(&claims("https://ci.example", "worker:1", "guarded"));
    let es_ok = es256(&ec, &claims("https://idp.example", "svc", "other"));
    let tampered = {
        let parts: Vec<&str> = hs_ok.split('.').collect();
        let evil = claims("https://ci.example", "worker:2", "guarded");
        format!("{}.{}.{}", parts[0], b64url(evil.to_string().as_bytes()), parts[2])
    };
    let mut cases = Vec::new();
    for v6 in [false, true] {
        cases.extend([
            Case { name: "no credentials", v6, headers: vec![], status: 401, code: Some("unauthorized") },
            Case { name: "basic", v6, headers: auth(basic("ops", PASSWORD)), status: 200, code: None },
            Case { name: "basic, lower-case scheme", v6, headers: auth(basic("ops", PASSWORD).replace("Basic", "basic")), status: 200, code: None },
            Case { name: "basic, wrong password", v6, headers: auth(basic("ops", "wrong")), status: 401, code: Some("unauthorized") },
            Case { name: "basic, wrong user", v6, headers: auth(basic("root", PASSWORD)), status: 401, code: Some("unauthorized") },
            Case { name: "basic, garbage", v6, headers: auth("Basic !!!".into()), status: 401, code: Some("unauthorized") },
            Case { name: "empty authorization", v6, headers: auth(String::new()), status: 401, code: Some("unauthorized") },
            Case { name: "unknown scheme", v6, headers: auth("Negotiate abc".into()), status: 401, code: Some("unauthorized") },
            Case { name: "two authorization headers", v6, headers: vec![("authorization", basic("ops", PASSWORD)), ("authorization", basic("ops", PASSWORD))], status: 401, code: Some("unauthorized") },
            Case { name: "hmac", v6, headers: bearer(hs_ok.clone()), status: 200, code: None },
            Case { name: "hmac, subject not allowed", v6, headers: bearer(hs256(&claims("https://ci.example", "admin", "guarded"))), status: 403, code: Some("forbidden") },
            Case { name: "hmac, wrong audience", v6, headers: bearer(hs256(&claims("https://ci.example", "worker:1", "elsewhere"))), status: 401, code: Some("unauthorized") },
            Case { name: "hmac, expired", v6, headers: bearer(hs256(&json!({"iss": "https://ci.example", "sub": "worker:1", "aud": "guarded", "exp": now() - 3600}))), status: 401, code: Some("unauthorized") },
            Case { name: "hmac, tampered payload", v6, headers: bearer(tampered.clone()), status: 401, code: Some("unauthorized") },
            Case { name: "alg none", v6, headers: bearer(format!("{}.", hs_ok.rsplit_once('.').unwrap().0.replace(&hs_ok[..hs_ok.find('.').unwrap()], &b64url(br#"{"alg":"none"}"#)))), status: 401, code: Some("unauthorized") },
            Case { name: "two segments", v6, headers: bearer("abc.def".into()), status: 401, code: Some("unauthorized") },
            Case { name: "issuer not configured", v6, headers: bearer(hs256(&claims("https://stranger.example", "worker:1", "guarded"))), status: 401, code: Some("unauthorized") },
            Case { name: "ecdsa", v6, headers: bearer(es_ok.clone()), status: 200, code: None },
            Case { name: "ecdsa, another key", v6, headers: bearer(es256(&other_ec, &claims("https://idp.example", "svc", "guarded"))), status: 401, code: Some("unauthorized") },
            Case { name: "ecdsa, HS256 keyed with the public key", v6, headers: bearer(jwt(&json!({"alg": "HS256"}), &claims("https://idp.example", "svc", "guarded"), |input| {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem(&ec).as_bytes());
                aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
            })), status: 401, code: Some("unauthorized") },
            Case { name: "100 KB token", v6, headers: bearer("a".repeat(100_000)), status: 431, code: Some("header_too_large") },
            Case { name: "forwarded header from an untrusted peer is ignored", v6, headers: vec![("x-forwarded-for", "203.0.113.5".into()), ("authorization", basic("ops", PASSWORD))], status: 200, code: None },
        ]);
    }
    let mut failures = Vec::new();
    for case in &cases {
        for path in ["/health", "/info", "/runs/wrun_missing", "/no-such-route"] {
            let (status, body, challenges) = answer(port, case.v6, path, &case.headers).await;
            let want_status = match (case.status, path) {
                (200, "/runs/wrun_missing" | "/no-such-route") => 404,
                (s, _) => s,
            };
            let code = body["code"].as_str();
            if status != want_status || (case.status != 200 && code != case.code) {
                failures
                    .push(format!("{} (v6 {}) {path}: got {status} {body}", case.name, case.v6));
            }
            if status == 401
                && challenges != ["Basic realm=\"ash\", charset=\"UTF-8\"", "Bearer realm=\"ash\""]
            {
                failures.push(format!("{}: challenges {challenges:?}", case.name));
            }
            let text = body.to_string();
            if text.contains(PASSWORD) || text.contains(&hs_ok) || text.contains(HMAC_SECRET) {
                failures.push(format!("{}: the answer echoes a credential: {text}", case.name));
            }
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    // The server kept serving through all of it, and its log holds no secret.
    let (status, body, _) = answer(port, false, "/health", &auth(basic("ops", PASSWORD))).await;
    assert_eq!((status, body), (200, json!({"ok": true, "status": "ready"})));
    let log = server.log();
    assert!(!log.contains(PASSWORD) && !log.contains(HMAC_SECRET), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allow_list_comes_first_and_trusts_only_named_proxies() {
    let model = FakeModelServer::start().await;
    let fx = fixture(
        &model,
        "[network]\nip_allow_list = [\"198.51.100.0/24\", \"::1\"]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        "",
    );
    let server = Server::start_with(fx.path(), &fx.join("state/ash.db"), &["--host", "::"], &[]);
    let port = server.port();
    let xff = |v: &str| vec![("x-forwarded-for", v.to_owned())];
    #[expect(clippy::type_complexity, reason = "a table of cases")]
    let cases: Vec<(&str, bool, Vec<(&'static str, String)>, u16, Option<&str>)> = vec![
        ("a trusted proxy forwarding an allowed client", false, xff("198.51.100.7"), 200, None),
        (
            "a trusted proxy forwarding a client outside",
            false,
            xff("203.0.113.1"),
            403,
            Some("ip_not_allowed"),
        ),
        (
            "a client spoofing the left of the header",
            false,
            xff("198.51.100.7, 203.0.113.1"),
            403,
            Some("ip_not_allowed"),
        ),
        (
            "a Forwarded header the proxy does not manage is ignored",
            false,
            vec![("forwarded", "for=198.51.100.7".into())],
            403,
            Some("ip_not_allowed"),
        ),
        (
            "X-Real-IP from the client is ignored",
            false,
            vec![("x-real-ip", "198.51.100.7".into())],
            403,
            Some("ip_not_allowed"),
        ),
        ("the proxy itself is not allowed", false, vec![], 403, Some("ip_not_allowed")),
        ("garbage from a trusted proxy", false, xff("not-an-ip"), 400, Some("invalid_forwarding")),
        ("IPv6 loopback is allowed", true, vec![], 200, None),
        ("::1 is no trusted proxy: its header is ignored", true, xff("203.0.113.1"), 200, None),
    ];
    let mut failures = Vec::new();
    for (name, v6, headers, want, code) in cases {
        let (status, body, _) = answer(port, v6, "/health", &headers).await;
        if status != want || (want != 200 && body["code"].as_str() != code) {
            failures.push(format!("{name}: got {status} {body}"));
        }
    }
    assert_eq!(failures, Vec::<String>::new());
}

/// Reads a run's stream (with credentials) until one of `until`.
async fn events_until(port: u16, auth: &str, run_id: &str, start: u64, until: &str) -> Vec<Event> {
    let url = format!("http://127.0.0.1:{port}{PREFIX}/runs/{run_id}/stream?startIndex={start}");
    let response =
        reqwest::Client::new().get(url).header("authorization", auth).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    crate::serve::read_events(response, &[until]).await
}

async fn post(port: u16, auth: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{PREFIX}/message"))
        .header("authorization", auth)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn tool_outputs(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ActionResult(r) => {
                Some(serde_json::to_value(&r.result).unwrap()["output"].clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_caller_reaches_authored_tools_and_the_initiator_stays() {
    let model = FakeModelServer::start().await;
    for _ in 0..2 {
        model
            .push(Reply::Turn(Turn::text("Checking.").then_tool_call("c1", "whoami", "{}")))
            .push(Reply::Turn(Turn::text("Done.")));
    }
    let fx = guarded_agent(&model);
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let server = start_guarded(&fx, &ec);
    let port = server.port();
    let ops = basic("ops", PASSWORD);
    let (status, first) = post(port, &ops, json!({"message": "who am I?"})).await;
    assert_eq!(status, 202, "{first}");
    let run_id = first["runId"].as_str().unwrap().to_owned();
    let events = events_until(port, &ops, &run_id, 0, "session.waiting").await;
    let worker = format!("Bearer {}", hs256(&claims("https://ci.example", "worker:9", "guarded")));
    let (status, second) = post(
        port,
        &worker,
        json!({"message": "and now?", "continuationToken": first["continuationToken"]}),
    )
    .await;
    assert_eq!(status, 202, "{second}");
    let later = events_until(
        port,
        &worker,
        &run_id,
        second["startIndex"].as_u64().unwrap(),
        "session.waiting",
    )
    .await;
    let ops_principal = json!({
        "authenticator": "http-basic", "principalId": "ops", "principalType": "user", "attributes": {}
    });
    let worker_principal = json!({
        "authenticator": "jwt-hmac", "issuer": "https://ci.example", "subject": "worker:9",
        "principalId": "https://ci.example:worker:9", "principalType": "service",
        "attributes": {"team": "infra"}
    });
    let session = |turn: u32, current: &Value| {
        json!({
            "sessionId": run_id, "runId": run_id, "mode": "conversation",
            "turn": {"id": format!("turn_{turn}"), "sequence": turn}, "parent": null,
            "auth": {"current": current, "initiator": ops_principal}
        })
    };
    assert_eq!(tool_outputs(&events), [session(0, &ops_principal)]);
    assert_eq!(tool_outputs(&later), [session(1, &worker_principal)]);
    // What the model was offered is what `ash info` and GET /info say it is offered.
    let offered: Vec<String> = model.requests()[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    let (_, info, _) = answer(port, false, "/info", &[("authorization", ops.clone())]).await;
    assert_eq!(info["agent"]["offeredTools"], json!(offered));
    assert_eq!(offered, ["bash", "edit_file", "read_file", "search_files", "whoami", "write_file"]);
}

#[test]
fn unexecuted_features_are_refused_unless_allowed_and_info_marks_them() {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"wide\"\nmodel = \"scripted/demo.jsonl\"\n[limits]\nsession_timeout_ms = 60000\n\
         //- agent/demo.jsonl\n{\"text\": \"hi\"}\n\
         //- agent/system.md\nHi.\n\
         //- agent/sandboxes/shell.toml\ndescription = \"A shell.\"\n\
         //- agent/subagents/helper/agent.toml\ndescription = \"Helps.\"\n\
         //- agent/subagents/helper/system.md\nHelp.\n\
         //- agent/tools/fetch.toml\ndescription = \"Fetch.\"\nkind = \"http\"\nconnection = \"api\"\nmethod = \"GET\"\npath = \"/x\"\n\
         //- agent/connections/api.toml\nkind = \"http\"\nbase_url = \"https://api.example\"\n\
         //- agent/schedules/nightly.md\n---\ncron: \"0 3 * * *\"\n---\nTidy up.\n\
         //- agent/tools/boxed.toml\ndescription = \"Calls the API from the box.\"\ncommand = [\"true\"]\nsandbox = \"shell\"\nconnections = [\"api\"]\n",
    );
    let out = ash_env(fx.path(), &["exec", ".", "hello"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for expected in [
        "the agent configures 1 item(s) this runtime does not execute yet",
        "agent/tools/boxed.toml: `tools/boxed.connections`: a command tool in a named sandbox (`shell`) cannot reach connections yet",
        "--allow-unsupported",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let out = ash_env(fx.path(), &["exec", ".", "hello", "--allow-unsupported"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "warning: ignoring agent/tools/boxed.toml `tools/boxed.connections` (--allow-unsupported)"
        ),
        "{err}"
    );
    let out = ash_env(fx.path(), &["info", ".", "--json"], &[]);
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The HTTP tool runs (its connection is an ordinary HTTP connection), and so do the
    // named sandbox and the subagent.
    assert_eq!(
        info["agent"]["offeredTools"],
        json!([
            "bash",
            "boxed",
            "edit_file",
            "fetch",
            "helper",
            "read_file",
            "search_files",
            "shell_sandbox",
            "write_file"
        ])
    );
    let marked: Vec<(String, Value)> = info["agent"]["unsupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["item"].as_str().unwrap().to_owned(), u["tools"].clone()))
        .collect();
    assert_eq!(marked, [("tools/boxed.connections".to_owned(), Value::Null)]);
    let text = crate::stdout(&ash_env(fx.path(), &["info", "."], &[]));
    assert!(text.contains("cannot reach connections yet"), "{text}");
    assert!(
        text.contains(
            "the model is offered: bash, boxed, edit_file, fetch, helper, read_file, search_files, shell_sandbox, write_file"
        ),
        "{text}"
    );
}

#[test]
fn dev_talks_to_a_protected_server_with_credentials_from_the_environment() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = rt.block_on(FakeModelServer::start());
    model.push(Reply::Turn(Turn::text("Hello, ops.")));
    let fx = guarded_agent(&model);
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let server = start_guarded(&fx, &ec);
    let url = format!("http://127.0.0.1:{}", server.port());
    let dev = |args: &[&str], env: &[(&str, &str)]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ash"))
            .arg("dev")
            .args(args)
            .current_dir(fx.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello\n/quit\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = dev(&[&url, "--basic", "ops"], &[("ASH_PASSWORD", PASSWORD)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(crate::stdout(&out), "Hello, ops.\n");
    let out = dev(&[&url], &[]);
    assert!(stderr(&out).contains("this agent requires credentials"), "{}", stderr(&out));
    let out = dev(&["--url", &url, "--basic", "ops"], &[("ASH_PASSWORD", "wrong")]);
    assert!(
        stderr(&out).contains("wrong user name or password (unauthorized)"),
        "{}",
        stderr(&out)
    );
    // A local agent that requires auth: the REPL needs credentials before anything starts.
    let out = dev(
        &["."],
        &[
            ("OPS_PASSWORD", PASSWORD),
            ("HMAC_SECRET", HMAC_SECRET),
            ("EC_PUBLIC_KEY", &pem(&ec)),
            ("OPENAI_API_KEY", "sk-test"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("run `ash dev --basic USER`"), "{}", stderr(&out));
    drop(server);
}

/// A real OpenID provider: `oidc-provider` from npm, run by node.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider, or says why it cannot and returns `None` (outside CI only).
    #[allow(clippy::print_stderr, reason = "a skipped test says why")]
    fn start() -> Option<Self> {
        let modules = std::env::var("ASH_TEST_OIDC_MODULES").ok().or_else(|| {
            std::env::var("HOME").ok().map(|h| format!("{h}/.cache/ash/oidc-provider/node_modules"))
        })?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/oidc/provider.mjs");
        let usable = std::path::Path::new(&modules).join("oidc-provider").is_dir()
            && Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
        if !usable {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install node and oidc-provider (see .ci/run); looked in {modules}"
            );
            eprintln!(
                "skipping: node or oidc-provider is not installed ({modules}); .ci/run installs them"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg(script)
            .env("ASH_OIDC_MODULES", &modules)
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("provider said {line:?}"));
        Some(Self { child, issuer: ready["issuer"].as_str().unwrap().to_owned() })
    }

    async fn token(&self, client: &str, secret: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={client}&client_secret={secret}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_openid_provider_issues_rs256_and_es256_tokens_ash_accepts() {
    let Some(provider) = Provider::start() else { return };
    let model = FakeModelServer::start().await;
    let fx = fixture(
        &model,
        &format!(
            "[[auth.strategies]]\nkind = \"oidc\"\nissuer = \"{0}\"\naudiences = [\"urn:ash:api\"]\nsubjects = [\"rs-client\", \"es-*\"]\ndiscovery_url = \"{0}/.well-known/openid-configuration\"\n",
            provider.issuer
        ),
        "",
    );
    let server = Server::start_with(fx.path(), &fx.join("state/ash.db"), &[], &[]);
    let port = server.port();
    let rs = provider.token("rs-client", "rs-secret").await;
    let es = provider.token("es-client", "es-secret").await;
    let header = |t: &str| -> Value {
        let part = t.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        (header(&rs)["alg"].clone(), header(&es)["alg"].clone()),
        (json!("RS256"), json!("ES256"))
    );
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    for (name, token, want) in [("RS256", rs.as_str(), 200), ("ES256", es.as_str(), 200)] {
        let (status, body, _) = answer(port, false, "/health", &bearer(token)).await;
        assert_eq!(status, want, "{name}: {body}");
    }
    // Tampered: the payload names another subject; the signature no longer holds.
    let parts: Vec<&str> = rs.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap(),
    )
    .unwrap();
    payload["sub"] = json!("es-admin");
    let forged = format!("{}.{}.{}", parts[0], b64url(payload.to_string().as_bytes()), parts[2]);
    let (status, body, _) = answer(port, false, "/health", &bearer(&forged)).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")), "{body}");
    // The message reaches the engine with the provider's principal.
    model.push(Reply::Turn(Turn::text("ok")));
    let (status, accepted) = post(port, &format!("Bearer {es}"), json!({"message": "hi"})).await;
    assert_eq!(status, 202, "{accepted}");
    // With the provider gone, cached keys keep verifying; an unknown key id is refused.
    drop(provider);
    let (status, _, _) = answer(port, false, "/health", &bearer(&rs)).await;
    assert_eq!(status, 200);
    let unknown_kid = {
        let mut h = header(&rs);
        h["kid"] = json!("rotated-away");
        format!("{}.{}.{}", b64url(h.to_string().as_bytes()), parts[1], parts[2])
    };
    let (status, body, _) = answer(port, false, "/health", &bearer(&unknown_kid)).await;
    assert_eq!((status, body["code"].clone()), (401, json!("unauthorized")), "{body}");
}

#[test]
fn a_key_that_does_not_parse_stops_start_before_it_serves() {
    let fx = Fixture::new(
        "//- agent/agent.toml\nname = \"k\"\nmodel = \"scripted/demo.jsonl\"\n\
         [[auth.strategies]]\nkind = \"jwt-ecdsa\"\nissuer = \"i\"\naudiences = [\"a\"]\n\
         public_key = \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\n\
         //- agent/demo.jsonl\n{\"text\": \"hi\"}\n//- agent/system.md\nHi.\n",
    );
    let out = ash_env(fx.path(), &["start", ".", "--port", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "auth strategy 1 (`jwt-ecdsa`) in agent.toml: the public key is not a valid ES256 key"
        ),
        "{err}"
    );
    assert!(!err.contains("serving"), "{err}");
}
