//! Benchmarks for ash-llm: stream parsing throughput and per-request overhead on loopback.
//!
//! Run with `cargo bench -p ash-llm --bench llm` (an optimised build). Prints, for each wire
//! format, how many events per second the decoder turns a 10,000-chunk response into, the same
//! through real HTTP against the fake model server, and the latency of small requests.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use ash_llm::{Client, ClientConfig, Decoder, ModelRequest, ProviderTable, ResponseLimits};
use ash_protocol::Message;
use ash_spec::{ModelRef, Provider, ProviderApi};
use ash_test_support::{FakeModelServer, Reply, Turn};
use tokio_util::sync::CancellationToken;

const CHUNKS: usize = 10_000;

fn openai_body() -> Vec<u8> {
    let mut body = String::new();
    for i in 0..CHUNKS {
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    body.into_bytes()
}

fn anthropic_body() -> Vec<u8> {
    let mut body = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for i in 0..CHUNKS {
        body.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{i} \"}}}}\n\n"
        ));
    }
    body.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":10000}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    body.into_bytes()
}

/// Decodes `body` in 16 KiB reads (a typical socket read), `rounds` times; returns events/s.
fn parse(api: ProviderApi, body: &[u8], rounds: u32) -> (f64, f64, usize) {
    let limits = ResponseLimits::default();
    let mut events = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut decoder = Decoder::new(api, "bench", &limits);
        let mut out = Vec::with_capacity(CHUNKS + 8);
        for chunk in body.chunks(16 << 10) {
            decoder.feed(chunk, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        events = out.len();
        black_box(&out);
    }
    let secs = start.elapsed().as_secs_f64();
    let per_round = secs / f64::from(rounds);
    (events as f64 / per_round, body.len() as f64 / per_round / 1e6, events)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("ash-llm benchmarks ({CHUNKS}-chunk responses)\n");
    println!("decoder only (bytes already in memory, 16 KiB reads):");
    for (name, api, body) in [
        ("openai", ProviderApi::OpenAi, openai_body()),
        ("anthropic", ProviderApi::Anthropic, anthropic_body()),
    ] {
        parse(api, &body, 3);
        let (rate, mbps, events) = parse(api, &body, 30);
        println!("  {name:<10} {events} events  {rate:>10.0} events/s  {mbps:>7.1} MB/s");
    }

    let server = FakeModelServer::start().await;
    let env: BTreeMap<String, String> =
        [("OPENAI_API_KEY", "bench"), ("ANTHROPIC_API_KEY", "bench")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
    let mut table = ProviderTable::builtin(&env);
    for (name, api) in [("openai", ProviderApi::OpenAi), ("anthropic", ProviderApi::Anthropic)] {
        table.apply(
            name,
            &Provider { api, base_url: Some(server.base_url()), api_key_env: None },
            &env,
        );
    }
    let client = Client::new(table, ClientConfig::default()).unwrap();
    let request =
        ModelRequest { messages: vec![Message::user("bench")], ..ModelRequest::default() };

    println!("\nend to end over loopback HTTP (fake server renders and sends, client decodes):");
    let long = Turn::text(&"token ".repeat(CHUNKS)).chunk_chars(6);
    for name in ["openai", "anthropic"] {
        let model =
            client.model(&ModelRef::parse(&format!("{name}/m")).unwrap(), Path::new(".")).unwrap();
        let rounds = 5;
        for _ in 0..rounds + 1 {
            server.push(Reply::Turn(long.clone()));
        }
        model.complete(&request, CancellationToken::new()).await.unwrap();
        let start = Instant::now();
        let mut events = 0;
        for _ in 0..rounds {
            let mut stream = model.stream(&request, CancellationToken::new());
            while let Some(event) = stream.next().await {
                event.unwrap();
                events += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  {name:<10} {:>10.0} events/s  ({:.1} ms per {CHUNKS}-chunk response)",
            events as f64 / secs,
            secs * 1000.0 / f64::from(rounds)
        );
    }

    println!("\nper-request overhead (one short turn, sequential, keep-alive):");
    let short = Turn::text("ok");
    for name in ["openai", "anthropic"] {
        let model =
            client.model(&ModelRef::parse(&format!("{name}/m")).unwrap(), Path::new(".")).unwrap();
        let n = 500;
        for _ in 0..n + 20 {
            server.push(Reply::Turn(short.clone()));
        }
        for _ in 0..20 {
            model.complete(&request, CancellationToken::new()).await.unwrap();
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            model.complete(&request, CancellationToken::new()).await.unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / n as u32;
        println!(
            "  {name:<10} mean {:>6.0} µs  p50 {:>6.0} µs  p99 {:>6.0} µs  (client + fake server)",
            mean.as_secs_f64() * 1e6,
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6
        );
    }
}
