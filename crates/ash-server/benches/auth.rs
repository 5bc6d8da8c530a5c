//! What inbound auth costs per request, and how a burst of made-up key ids meets the issuer.
//!
//! `cargo bench -p ash-server --bench auth [-- --iterations N]`
//!
//! For each strategy (none, http-basic, HS256, ES256, OIDC RS256 and ES256 with a warm key
//! cache) the gate checks the same valid request N times; the table gives p50 and p99 per check
//! and the p50 added over the gate with nothing configured. Then 1,000 requests at once carry
//! tokens with key ids the issuer never published, against a gate whose cache is warm: the
//! figure is how many times the JWKS was fetched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, reason = "a benchmark")]
#![allow(missing_docs, reason = "a benchmark")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ash_server::{Gate, OidcConfig};
use ash_spec::{AuthStrategy, Interpolated, JwtAlgorithm, JwtClaims, Package};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn jwt(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input =
        format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn claims(iss: &str) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    json!({"iss": iss, "sub": "svc", "aud": "api", "exp": now + 3600, "iat": now, "scope": "read"})
}

fn rules(issuer: &str) -> JwtClaims {
    JwtClaims {
        issuer: issuer.to_owned(),
        audiences: vec!["api".to_owned()],
        subjects: vec!["svc*".to_owned()],
        clock_skew_seconds: 60,
    }
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` (SEQUENCE of two INTEGERs).
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = der[0];
        let (len, at) = if der[1] < 0x80 {
            (der[1] as usize, 2)
        } else {
            let n = (der[1] & 0x7f) as usize;
            (der[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize), 2 + n)
        };
        (tag, &der[at..at + len], &der[at + len..])
    }
    let (_, seq, _) = read(der);
    let (_, n, rest) = read(seq);
    let (_, e, _) = read(rest);
    (n.to_vec(), e.to_vec())
}

/// A JWKS served on loopback, counting fetches.
async fn issuer(keys: Value) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let (count, iss) = (Arc::clone(&fetches), url.clone());
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let iss = iss.clone();
                async move { axum::Json(json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")})) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let keys = keys.clone();
                async move { axum::Json(json!({ "keys": keys })) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fetches)
}

fn gate(strategies: Vec<AuthStrategy>) -> Gate {
    let mut package = Package::empty("bench");
    package.auth = strategies;
    Gate::new(&package, &OidcConfig::default()).unwrap()
}

fn headers(authorization: Option<&str>) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(value) = authorization {
        map.insert("authorization", HeaderValue::from_str(value).unwrap());
    }
    map
}

async fn time(gate: &Gate, headers: &HeaderMap, iterations: usize) -> Vec<Duration> {
    let peer = Some("127.0.0.1:9".parse().unwrap());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    for _ in 0..iterations / 10 {
        gate.check(headers, peer, now).await.unwrap();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let verdict = gate.check(headers, peer, now).await;
        samples.push(started.elapsed());
        assert!(verdict.is_ok());
    }
    samples.sort();
    samples
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);

    let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ec_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
        base64::engine::general_purpose::STANDARD
            .encode(ec.public_key().as_der().unwrap().as_ref())
    );
    let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let (n, e) = rsa_components(rsa.public_key().as_ref());
    let point = ec.public_key().as_ref().to_vec();
    let (oidc_url, fetches) = issuer(json!([
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": b64(&n), "e": b64(&e)},
        {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256", "use": "sig",
         "x": b64(&point[1..33]), "y": b64(&point[33..65])},
    ]))
    .await;
    let es_sign = |input: &[u8]| ec.sign(&SystemRandom::new(), input).unwrap().as_ref().to_vec();
    let rs_sign = |input: &[u8]| {
        let mut out = vec![0; rsa.public_modulus_len()];
        rsa.sign(&sig::RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut out).unwrap();
        out
    };
    let hs_sign = |input: &[u8]| {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
        aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
    };
    let oidc = || AuthStrategy::Oidc {
        claims: rules(&oidc_url),
        discovery_url: Interpolated::literal(format!(
            "{oidc_url}/.well-known/openid-configuration"
        )),
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:correct horse battery")
    );
    let cases: Vec<(&str, Gate, Option<String>)> = vec![
        ("none (baseline)", gate(vec![]), None),
        (
            "http-basic",
            gate(vec![AuthStrategy::HttpBasic {
                username: "ops".into(),
                password: Interpolated::literal("correct horse battery"),
            }]),
            Some(basic),
        ),
        (
            "jwt-hmac HS256",
            gate(vec![AuthStrategy::JwtHmac {
                claims: rules("hs"),
                algorithm: JwtAlgorithm::Hs256,
                secret: Interpolated::literal(SECRET),
            }]),
            Some(format!("Bearer {}", jwt(&json!({"alg": "HS256"}), &claims("hs"), hs_sign))),
        ),
        (
            "jwt-ecdsa ES256",
            gate(vec![AuthStrategy::JwtEcdsa {
                claims: rules("es"),
                algorithm: JwtAlgorithm::Es256,
                public_key: Interpolated::literal(ec_pem.clone()),
            }]),
            Some(format!("Bearer {}", jwt(&json!({"alg": "ES256"}), &claims("es"), es_sign))),
        ),
        (
            "oidc RS256, warm cache",
            gate(vec![oidc()]),
            Some(format!(
                "Bearer {}",
                jwt(&json!({"alg": "RS256", "kid": "rs"}), &claims(&oidc_url), rs_sign)
            )),
        ),
        (
            "oidc ES256, warm cache",
            gate(vec![oidc()]),
            Some(format!(
                "Bearer {}",
                jwt(&json!({"alg": "ES256", "kid": "es"}), &claims(&oidc_url), es_sign)
            )),
        ),
    ];
    println!("auth check per request, {iterations} iterations each (one core, in process)\n");
    println!("{:<26} {:>10} {:>10} {:>14}", "strategy", "p50", "p99", "added p50");
    let mut baseline = None;
    for (name, gate, authorization) in &cases {
        gate.prefetch().await;
        let samples = time(gate, &headers(authorization.as_deref()), iterations).await;
        let p50 = pct(&samples, 0.5);
        let base = *baseline.get_or_insert(p50);
        println!(
            "{name:<26} {:>10} {:>10} {:>14}",
            us(p50),
            us(pct(&samples, 0.99)),
            us(p50.saturating_sub(base))
        );
    }

    println!();
    // Bursts of made-up key ids: right after the keys were fetched, and once the refresh
    // interval has passed (here 50 ms instead of the default 10 s).
    for (label, wait) in
        [("fresh cache", Duration::ZERO), ("refresh interval passed", Duration::from_millis(60))]
    {
        let mut package = Package::empty("bench");
        package.auth = vec![oidc()];
        let config = OidcConfig { min_refresh: Duration::from_millis(50), ..OidcConfig::default() };
        let burst = Arc::new(Gate::new(&package, &config).unwrap());
        burst.prefetch().await;
        tokio::time::sleep(wait).await;
        let before = fetches.load(Ordering::SeqCst);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let gate = Arc::clone(&burst);
            let token = jwt(
                &json!({"alg": "ES256", "kid": format!("forged-{i}")}),
                &claims(&oidc_url),
                es_sign,
            );
            tasks.spawn(async move {
                let map = headers(Some(&format!("Bearer {token}")));
                gate.check(&map, Some("127.0.0.1:9".parse().unwrap()), 0).await.is_err()
            });
        }
        let mut refused = 0;
        while let Some(denied) = tasks.join_next().await {
            refused += usize::from(denied.unwrap());
        }
        println!(
            "1,000 requests with unknown key ids ({label}): {refused} refused in {:.1} ms, {} JWKS fetch(es)",
            started.elapsed().as_secs_f64() * 1e3,
            fetches.load(Ordering::SeqCst) - before
        );
    }
}
