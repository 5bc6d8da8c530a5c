//! Verdicts of the gate, strategy by strategy and fault by fault, with tokens minted here and
//! an OIDC issuer served on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code fails loudly")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ash_spec::{Interpolated, JwtAlgorithm, JwtClaims};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use axum::http::HeaderValue;
use base64::Engine as _;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_800_000_000;
const HMAC_SECRET: &str = "0123456789abcdef0123456789abcdef";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

fn hs256(secret: &str, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

fn es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(signature.as_ref()))
}

fn eddsa(key: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    format!("{input}.{}", b64url(key.sign(input.as_bytes()).as_ref()))
}

fn ec_key() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
}

fn pem(key: &EcdsaKeyPair) -> String {
    let der = key.public_key().as_der().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
}

fn ec_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref().to_vec();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
           "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
}

fn claims(iss: &str, sub: &str) -> Value {
    json!({"iss": iss, "sub": sub, "aud": "api", "exp": NOW + 300, "iat": NOW, "role": "ops"})
}

fn token_claims(issuer: &str, subjects: &[&str]) -> JwtClaims {
    JwtClaims {
        issuer: issuer.to_owned(),
        audiences: vec!["api".to_owned()],
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        clock_skew_seconds: 60,
    }
}

/// What a check came to, in a form a table can hold.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Pass(Option<String>),
    Deny(u16, &'static str),
}

async fn verdict(gate: &Gate, headers: &[(&'static str, &str)], peer: &str) -> Got {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    match gate.check(&map, Some(peer.parse().unwrap()), NOW).await {
        Ok(principal) => Got::Pass(principal.map(|p| p.principal_id)),
        Err(denial) => {
            let response = gate.respond(denial);
            let code = match response.status().as_u16() {
                401 => "unauthorized",
                403 if response.headers().get("x-test").is_none() => "forbidden-or-ip",
                _ => "other",
            };
            Got::Deny(response.status().as_u16(), code)
        }
    }
}

#[expect(clippy::type_complexity, reason = "a table of cases")]
#[tokio::test]
async fn every_strategy_and_fault_gets_its_verdict() {
    let ec = ec_key();
    let other_ec = ec_key();
    let mut package = ash_spec::Package::empty("t");
    package.ip_allow_list =
        vec![IpNet::parse("127.0.0.0/8").unwrap(), IpNet::parse("::1").unwrap()];
    package.auth = vec![
        AuthStrategy::HttpBasic {
            username: "ops".into(),
            password: Interpolated::literal("pa:ss"),
        },
        AuthStrategy::JwtHmac {
            claims: token_claims("hmac-issuer", &["worker:*"]),
            algorithm: JwtAlgorithm::Hs256,
            secret: Interpolated::literal(HMAC_SECRET),
        },
        AuthStrategy::JwtEcdsa {
            claims: token_claims("ec-issuer", &[]),
            algorithm: JwtAlgorithm::Es256,
            public_key: Interpolated::literal(pem(&ec)),
        },
    ];
    let gate = Gate::new(&package, &OidcConfig::default()).unwrap();
    let basic =
        |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
    let hs = |c: &Value| {
        format!("Bearer {}", hs256(HMAC_SECRET, &json!({"alg": "HS256", "typ": "JWT"}), c))
    };
    let es = |c: &Value| format!("Bearer {}", es256(&ec, &json!({"alg": "ES256"}), c));
    let good_hs = claims("hmac-issuer", "worker:7");
    let good_es = claims("ec-issuer", "svc");
    let public_pem = pem(&ec);
    let cases: Vec<(&str, Vec<(&'static str, String)>, &str, Got)> = vec![
        (
            "basic",
            vec![("authorization", basic("ops:pa:ss"))],
            "127.0.0.1:1",
            Got::Pass(Some("ops".into())),
        ),
        (
            "basic, scheme in capitals",
            vec![("authorization", basic("ops:pa:ss").replace("Basic", "BASIC"))],
            "127.0.0.1:1",
            Got::Pass(Some("ops".into())),
        ),
        (
            "basic over IPv6",
            vec![("authorization", basic("ops:pa:ss"))],
            "[::1]:1",
            Got::Pass(Some("ops".into())),
        ),
        (
            "basic over IPv4-mapped IPv6",
            vec![("authorization", basic("ops:pa:ss"))],
            "[::ffff:127.0.0.1]:1",
            Got::Pass(Some("ops".into())),
        ),
        (
            "outside the allow list, even with good credentials",
            vec![("authorization", basic("ops:pa:ss"))],
            "192.0.2.1:1",
            Got::Deny(403, "forbidden-or-ip"),
        ),
        (
            "outside the allow list, forwarded header ignored",
            vec![("x-forwarded-for", "127.0.0.1".into())],
            "192.0.2.1:1",
            Got::Deny(403, "forbidden-or-ip"),
        ),
        ("no credentials", vec![], "127.0.0.1:1", Got::Deny(401, "unauthorized")),
        (
            "empty header",
            vec![("authorization", String::new())],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "two headers",
            vec![("authorization", basic("ops:pa:ss")), ("authorization", basic("ops:pa:ss"))],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "wrong password",
            vec![("authorization", basic("ops:pa:sS"))],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "basic garbage",
            vec![("authorization", "Basic %%%".into())],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "unknown scheme",
            vec![("authorization", "Digest username=ops".into())],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "scheme only",
            vec![("authorization", "Bearer".into())],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac",
            vec![("authorization", hs(&good_hs))],
            "127.0.0.1:1",
            Got::Pass(Some("hmac-issuer:worker:7".into())),
        ),
        (
            "bearer in lower case",
            vec![("authorization", hs(&good_hs).replace("Bearer", "bearer"))],
            "127.0.0.1:1",
            Got::Pass(Some("hmac-issuer:worker:7".into())),
        ),
        (
            "hmac, subject not allowed",
            vec![("authorization", hs(&claims("hmac-issuer", "admin")))],
            "127.0.0.1:1",
            Got::Deny(403, "forbidden-or-ip"),
        ),
        (
            "hmac, wrong secret",
            vec![(
                "authorization",
                format!(
                    "Bearer {}",
                    hs256("another-secret-another-secret-xx", &json!({"alg": "HS256"}), &good_hs)
                ),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac, expired",
            vec![(
                "authorization",
                hs(
                    &json!({"iss": "hmac-issuer", "sub": "worker:1", "aud": "api", "exp": NOW - 61}),
                ),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac, not yet valid",
            vec![(
                "authorization",
                hs(
                    &json!({"iss": "hmac-issuer", "sub": "worker:1", "aud": "api", "exp": NOW + 600, "nbf": NOW + 61}),
                ),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac, wrong audience",
            vec![(
                "authorization",
                hs(
                    &json!({"iss": "hmac-issuer", "sub": "worker:1", "aud": ["web"], "exp": NOW + 60}),
                ),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac, no subject",
            vec![(
                "authorization",
                hs(&json!({"iss": "hmac-issuer", "aud": "api", "exp": NOW + 60})),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "hmac, tampered payload",
            vec![("authorization", {
                let t = hs(&good_hs);
                let parts: Vec<&str> = t.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64url(claims("hmac-issuer", "worker:8").to_string().as_bytes()),
                    parts[2]
                )
            })],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "alg none",
            vec![(
                "authorization",
                format!("Bearer {}.", signing_input(&json!({"alg": "none"}), &good_hs)),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "HS256 keyed with the ECDSA public key",
            vec![(
                "authorization",
                format!("Bearer {}", hs256(&public_pem, &json!({"alg": "HS256"}), &good_es)),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "ES256 header on the hmac issuer",
            vec![(
                "authorization",
                format!("Bearer {}", es256(&ec, &json!({"alg": "ES256"}), &good_hs)),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "ecdsa",
            vec![("authorization", es(&good_es))],
            "127.0.0.1:1",
            Got::Pass(Some("ec-issuer:svc".into())),
        ),
        (
            "ecdsa, another key",
            vec![(
                "authorization",
                format!("Bearer {}", es256(&other_ec, &json!({"alg": "ES256"}), &good_es)),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "ecdsa, key in a jwk header",
            vec![(
                "authorization",
                format!(
                    "Bearer {}",
                    es256(
                        &other_ec,
                        &json!({"alg": "ES256", "jwk": ec_jwk(&other_ec, "x")}),
                        &good_es
                    )
                ),
            )],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "unknown issuer",
            vec![("authorization", hs(&claims("elsewhere", "worker:1")))],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "two segments",
            vec![("authorization", "Bearer a.b".into())],
            "127.0.0.1:1",
            Got::Deny(401, "unauthorized"),
        ),
        (
            "100 KB token",
            vec![("authorization", format!("Bearer {}", "a".repeat(100_000)))],
            "127.0.0.1:1",
            Got::Deny(431, "other"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, headers, peer, want) in cases {
        let headers: Vec<(&'static str, &str)> =
            headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let got = verdict(&gate, &headers, peer).await;
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert_eq!(failures, Vec::<String>::new());
}

#[tokio::test]
async fn denials_carry_challenges_and_never_echo_credentials() {
    let mut package = ash_spec::Package::empty("t");
    package.auth = vec![
        AuthStrategy::HttpBasic {
            username: "ops".into(),
            password: Interpolated::literal("hunter2"),
        },
        AuthStrategy::JwtHmac {
            claims: token_claims("i", &[]),
            algorithm: JwtAlgorithm::Hs256,
            secret: Interpolated::literal(HMAC_SECRET),
        },
    ];
    let gate = Gate::new(&package, &OidcConfig::default()).unwrap();
    let secret_token =
        hs256("not-the-secret-not-the-secret-xx", &json!({"alg": "HS256"}), &claims("i", "s"));
    let mut headers = HeaderMap::new();
    headers
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {secret_token}")).unwrap());
    let denial = gate.check(&headers, None, NOW).await.unwrap_err();
    let response = gate.respond(denial);
    let challenges: Vec<&str> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(challenges, ["Basic realm=\"ash\", charset=\"UTF-8\"", "Bearer realm=\"ash\""]);
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"ok": false, "code": "unauthorized", "error": "the bearer token is not signed by an issuer and key this agent accepts"})
    );
}

#[tokio::test]
async fn no_configuration_lets_everyone_through_without_a_principal() {
    let gate = Gate::new(&ash_spec::Package::empty("t"), &OidcConfig::default()).unwrap();
    assert!(!gate.requires_auth());
    assert_eq!(
        verdict(&gate, &[("authorization", "Bearer junk")], "192.0.2.1:1").await,
        Got::Pass(None)
    );
}

#[tokio::test]
async fn strategy_order_never_changes_a_verdict() {
    // Two strategies for one issuer: a token valid for the second must pass whichever comes
    // first, and a token failing both must get the most advanced reason.
    let a = AuthStrategy::JwtHmac {
        claims: JwtClaims { audiences: vec!["other".into()], ..token_claims("same", &[]) },
        algorithm: JwtAlgorithm::Hs256,
        secret: Interpolated::literal(HMAC_SECRET),
    };
    let b = AuthStrategy::JwtHmac {
        claims: token_claims("same", &["svc"]),
        algorithm: JwtAlgorithm::Hs256,
        secret: Interpolated::literal(HMAC_SECRET),
    };
    let token = |sub: &str| {
        format!("Bearer {}", hs256(HMAC_SECRET, &json!({"alg": "HS256"}), &claims("same", sub)))
    };
    for order in [vec![a.clone(), b.clone()], vec![b, a]] {
        let mut package = ash_spec::Package::empty("t");
        package.auth = order;
        let gate = Gate::new(&package, &OidcConfig::default()).unwrap();
        assert_eq!(
            verdict(&gate, &[("authorization", &token("svc"))], "127.0.0.1:1").await,
            Got::Pass(Some("same:svc".into()))
        );
        assert_eq!(
            verdict(&gate, &[("authorization", &token("intruder"))], "127.0.0.1:1").await,
            Got::Deny(403, "forbidden-or-ip")
        );
    }
}

/// An OIDC issuer on loopback whose answers a test changes.
struct Issuer {
    url: String,
    behaviour: Arc<Mutex<Behaviour>>,
    jwks_fetches: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
enum Behaviour {
    Keys(Vec<Value>),
    Down,
    Garbage,
    Slow,
    OtherIssuer,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let behaviour = Arc::new(Mutex::new(Behaviour::Keys(keys)));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (b1, b2, count, issuer) = (
            Arc::clone(&behaviour),
            Arc::clone(&behaviour),
            Arc::clone(&jwks_fetches),
            url.clone(),
        );
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let b = b1.lock().unwrap().clone();
                    let issuer = issuer.clone();
                    async move {
                        let named = if matches!(b, Behaviour::OtherIssuer) {
                            "https://evil.example".to_owned()
                        } else {
                            issuer.clone()
                        };
                        axum::Json(json!({"issuer": named, "jwks_uri": format!("{issuer}/jwks")}))
                    }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let b = b2.lock().unwrap().clone();
                    async move {
                        match b {
                            Behaviour::Keys(keys) => {
                                axum::Json(json!({"keys": keys})).into_response()
                            }
                            Behaviour::OtherIssuer => {
                                axum::Json(json!({"keys": []})).into_response()
                            }
                            Behaviour::Down => StatusCode::BAD_GATEWAY.into_response(),
                            Behaviour::Garbage => "<html>not json</html>".into_response(),
                            Behaviour::Slow => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                StatusCode::OK.into_response()
                            }
                        }
                    }
                }),
            );
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, behaviour, jwks_fetches, _server: server }
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn gate(&self, config: OidcConfig) -> Gate {
        let mut package = ash_spec::Package::empty("t");
        package.auth = vec![AuthStrategy::Oidc {
            claims: token_claims(&self.url, &[]),
            discovery_url: Interpolated::literal(format!(
                "{}/.well-known/openid-configuration",
                self.url
            )),
        }];
        Gate::new(&package, &config).unwrap()
    }
}

fn quick(min_refresh: Duration) -> OidcConfig {
    OidcConfig {
        timeout: Duration::from_millis(500),
        min_refresh,
        max_age: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn oidc_tokens_verify_through_discovery_and_survive_rotation() {
    let (k1, k2) = (ec_key(), ec_key());
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_jwk =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64url(ed.public_key().as_ref())});
    let issuer = Issuer::start(vec![ec_jwk(&k1, "k1"), ed_jwk]).await;
    let gate = issuer.gate(quick(Duration::ZERO));
    let iss = issuer.url.clone();
    let bearer = |t: String| format!("Bearer {t}");
    let t1 = bearer(es256(&k1, &json!({"alg": "ES256", "kid": "k1"}), &claims(&iss, "app")));
    let want = Got::Pass(Some(format!("{iss}:app")));
    assert_eq!(verdict(&gate, &[("authorization", &t1)], "127.0.0.1:1").await, want);
    let ted = bearer(eddsa(&ed, &json!({"alg": "EdDSA", "kid": "ed"}), &claims(&iss, "app")));
    assert_eq!(verdict(&gate, &[("authorization", &ted)], "127.0.0.1:1").await, want);
    // The algorithm is the key's: an ES256 key does not verify a token claiming EdDSA.
    let confused = bearer(eddsa(&ed, &json!({"alg": "EdDSA", "kid": "k1"}), &claims(&iss, "app")));
    assert_eq!(
        verdict(&gate, &[("authorization", &confused)], "127.0.0.1:1").await,
        Got::Deny(401, "unauthorized")
    );
    // Rotation: the issuer replaces k1 by k2; a k2 token makes the gate refetch.
    issuer.set(Behaviour::Keys(vec![ec_jwk(&k2, "k2")]));
    let t2 = bearer(es256(&k2, &json!({"alg": "ES256", "kid": "k2"}), &claims(&iss, "app")));
    assert_eq!(verdict(&gate, &[("authorization", &t2)], "127.0.0.1:1").await, want);
    // A token without a kid is tried against the keys of its algorithm.
    let no_kid = bearer(es256(&k2, &json!({"alg": "ES256"}), &claims(&iss, "app")));
    assert_eq!(verdict(&gate, &[("authorization", &no_kid)], "127.0.0.1:1").await, want);
}

#[tokio::test]
async fn unknown_key_ids_cannot_make_the_gate_hammer_the_issuer() {
    let key = ec_key();
    let issuer = Issuer::start(vec![ec_jwk(&key, "k1")]).await;
    let gate = Arc::new(issuer.gate(quick(Duration::from_secs(3600))));
    let iss = issuer.url.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let gate = Arc::clone(&gate);
        let token = format!(
            "Bearer {}",
            es256(
                &key,
                &json!({"alg": "ES256", "kid": format!("made-up-{i}")}),
                &claims(&iss, "app")
            )
        );
        tasks.spawn(
            async move { verdict(&gate, &[("authorization", &token)], "127.0.0.1:1").await },
        );
    }
    while let Some(got) = tasks.join_next().await {
        assert_eq!(got.unwrap(), Got::Deny(401, "unauthorized"));
    }
    // One fetch for the whole burst (the first request), none after.
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1);
    // The known key still works throughout.
    let good = format!(
        "Bearer {}",
        es256(&key, &json!({"alg": "ES256", "kid": "k1"}), &claims(&iss, "app"))
    );
    assert_eq!(
        verdict(&gate, &[("authorization", &good)], "127.0.0.1:1").await,
        Got::Pass(Some(format!("{iss}:app")))
    );
}

#[tokio::test]
async fn a_broken_issuer_means_503_and_cached_keys_keep_working() {
    let key = ec_key();
    for (behaviour, name) in [
        (Behaviour::Down, "down"),
        (Behaviour::Garbage, "garbage"),
        (Behaviour::Slow, "slow"),
        (Behaviour::OtherIssuer, "names another issuer"),
        (
            Behaviour::Keys(vec![json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"})]),
            "no signature key",
        ),
    ] {
        let issuer = Issuer::start(vec![]).await;
        issuer.set(behaviour);
        let gate = issuer.gate(quick(Duration::ZERO));
        let token = format!(
            "Bearer {}",
            es256(&key, &json!({"alg": "ES256", "kid": "k1"}), &claims(&issuer.url, "app"))
        );
        assert_eq!(
            verdict(&gate, &[("authorization", &token)], "127.0.0.1:1").await,
            Got::Deny(503, "other"),
            "{name}"
        );
    }
    // Keys fetched once keep verifying while the issuer is down.
    let issuer = Issuer::start(vec![ec_jwk(&key, "k1")]).await;
    let gate = issuer.gate(quick(Duration::ZERO));
    gate.prefetch().await;
    issuer.set(Behaviour::Down);
    let token = format!(
        "Bearer {}",
        es256(&key, &json!({"alg": "ES256", "kid": "k1"}), &claims(&issuer.url, "app"))
    );
    assert_eq!(
        verdict(&gate, &[("authorization", &token)], "127.0.0.1:1").await,
        Got::Pass(Some(format!("{}:app", issuer.url)))
    );
    let unknown = format!(
        "Bearer {}",
        es256(&key, &json!({"alg": "ES256", "kid": "k9"}), &claims(&issuer.url, "app"))
    );
    assert_eq!(
        verdict(&gate, &[("authorization", &unknown)], "127.0.0.1:1").await,
        Got::Deny(401, "unauthorized")
    );
}

#[tokio::test]
async fn principals_carry_the_claims_worth_keeping() {
    let mut package = ash_spec::Package::empty("t");
    package.auth = vec![AuthStrategy::JwtHmac {
        claims: token_claims("i", &[]),
        algorithm: JwtAlgorithm::Hs256,
        secret: Interpolated::literal(HMAC_SECRET),
    }];
    let gate = Gate::new(&package, &OidcConfig::default()).unwrap();
    let token = hs256(HMAC_SECRET, &json!({"alg": "HS256"}), &claims("i", "svc-1"));
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let principal = gate.check(&headers, None, NOW).await.unwrap().unwrap();
    assert_eq!(
        principal,
        SessionAuthContext {
            authenticator: Authenticator::JwtHmac,
            issuer: Some("i".into()),
            subject: Some("svc-1".into()),
            principal_id: "i:svc-1".into(),
            principal_type: PrincipalType::Service,
            attributes: BTreeMap::from([(
                "role".to_owned(),
                ash_protocol::AttributeValue::One("ops".into())
            )]),
        }
    );
}

#[tokio::test]
async fn old_keys_keep_working_while_one_request_refreshes_them() {
    let key = ec_key();
    let issuer = Issuer::start(vec![ec_jwk(&key, "k1")]).await;
    // Every key set is "old" at once, and the provider now hangs.
    let config = OidcConfig { max_age: Duration::ZERO, ..quick(Duration::ZERO) };
    let gate = Arc::new(issuer.gate(config));
    gate.prefetch().await;
    issuer.set(Behaviour::Slow);
    let token = format!(
        "Bearer {}",
        es256(&key, &json!({"alg": "ES256", "kid": "k1"}), &claims(&issuer.url, "app"))
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (gate, token) = (Arc::clone(&gate), token.clone());
        tasks.spawn(
            async move { verdict(&gate, &[("authorization", &token)], "127.0.0.1:1").await },
        );
    }
    while let Some(got) = tasks.join_next().await {
        assert_eq!(got.unwrap(), Got::Pass(Some(format!("{}:app", issuer.url))));
    }
    // One refresh was tried (and timed out); the others did not queue behind it.
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn hmac_tokens_never_make_an_oidc_strategy_of_the_same_issuer_fetch() {
    let issuer = Issuer::start(vec![ec_jwk(&ec_key(), "k1")]).await;
    let mut package = ash_spec::Package::empty("t");
    package.auth = vec![
        AuthStrategy::Oidc {
            claims: token_claims(&issuer.url, &[]),
            discovery_url: Interpolated::literal(format!(
                "{}/.well-known/openid-configuration",
                issuer.url
            )),
        },
        AuthStrategy::JwtHmac {
            claims: token_claims(&issuer.url, &[]),
            algorithm: JwtAlgorithm::Hs256,
            secret: Interpolated::literal(HMAC_SECRET),
        },
    ];
    let gate = Gate::new(&package, &quick(Duration::ZERO)).unwrap();
    let good = format!(
        "Bearer {}",
        hs256(HMAC_SECRET, &json!({"alg": "HS256"}), &claims(&issuer.url, "svc"))
    );
    let bad = format!(
        "Bearer {}",
        hs256(
            "x-wrong-secret-x-wrong-secret-xx",
            &json!({"alg": "HS256"}),
            &claims(&issuer.url, "svc")
        )
    );
    for _ in 0..5 {
        assert_eq!(
            verdict(&gate, &[("authorization", &good)], "127.0.0.1:1").await,
            Got::Pass(Some(format!("{}:svc", issuer.url)))
        );
        assert_eq!(
            verdict(&gate, &[("authorization", &bad)], "127.0.0.1:1").await,
            Got::Deny(401, "unauthorized")
        );
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 0);
}
