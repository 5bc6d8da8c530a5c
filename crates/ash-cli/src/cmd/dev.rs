//! `ash dev`: a local server plus a REPL that talks to it over HTTP (or to `--url`).
//!
//! The REPL is an HTTP client of the public API, so it behaves exactly as any other client:
//! POST /message, then read the NDJSON stream from the returned `startIndex`, reconnecting from
//! the last index if the connection drops, until `session.waiting` or the run's end. A call
//! that waits for approval is asked about at the prompt and answered with
//! POST /runs/:runId/input; a run paused on a budget is resumed with `/resume`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ash_protocol::{
    API_PREFIX, ApiError, Event, EventBody, InputAnswer, InputRequested, MessageAccepted,
    MessageRequest, RunContinues,
};
use ash_server::ServerConfig;
use ash_spec::Secret;
use base64::Engine as _;
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

use crate::cli::DevArgs;
use crate::cmd::harness::{self, StoreChoice};
use crate::cmd::start::{init_logging, runtime};
use crate::cmd::{Outcome, render};
use crate::{config, output};

/// Reconnects to a stream before giving up on a turn.
const RECONNECTS: u32 = 5;

const HELP: &str = "Type a message and press Enter. Commands:
  /new     start a new session (forget the continuation token)
  /resume  continue a run paused on a budget (after raising it and restarting the server)
  /help    show this help
  /quit    leave (also Ctrl-D)
Ctrl-C cancels the running turn. A call that needs approval is asked about here: y approves,
anything else denies (what you type after `n ` goes to the model).";

/// Lines of the REPL's input.
type Input = tokio::io::Lines<BufReader<tokio::io::Stdin>>;

/// Where a turn left the session.
struct Left {
    /// The token for the next message; `None` when the session ended.
    token: Option<String>,
    /// The run, for `/resume`.
    run_id: String,
    /// Its stream path.
    stream_path: String,
}

/// Credentials the REPL sends on every request.
enum Credentials {
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

impl Credentials {
    /// From `--basic USER` or `--token`: the secret from the environment, else the terminal.
    fn from_args(args: &DevArgs) -> anyhow::Result<Option<Self>> {
        if let Some(user) = &args.basic {
            if user.is_empty() || user.contains(':') {
                bail!("`--basic` takes a user name without `:`");
            }
            let password = match config::client_secret("ASH_PASSWORD") {
                Some(password) => password,
                None => Secret::new(output::prompt_secret(&format!("password for {user}: "))?),
            };
            return Ok(Some(Self::Basic { user: user.clone(), password }));
        }
        if args.token {
            let token = match config::client_secret("ASH_TOKEN") {
                Some(token) => token,
                None => Secret::new(output::prompt_secret("bearer token: ")?),
            };
            if token.expose().trim().is_empty() {
                bail!("the bearer token is empty");
            }
            return Ok(Some(Self::Bearer(token)));
        }
        Ok(None)
    }

    /// The `Authorization` header value, marked sensitive so it never reaches logs.
    fn header(&self) -> anyhow::Result<reqwest::header::HeaderValue> {
        let text = match self {
            Self::Basic { user, password } => {
                let pair = format!("{user}:{}", password.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
            Self::Bearer(token) => format!("Bearer {}", token.expose().trim()),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
            anyhow::anyhow!("the credentials contain characters a header cannot carry")
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Where the REPL's messages go: a URL, or an agent directory served here.
fn target(args: &DevArgs) -> anyhow::Result<Result<String, PathBuf>> {
    let looks_like_url = |t: &str| t.starts_with("http://") || t.starts_with("https://");
    match &args.url {
        Some(url) if args.target != "." => bail!(
            "give either a URL (`ash dev {url}`) or a directory (`ash dev {}`), not both",
            args.target
        ),
        Some(url) if !looks_like_url(url) => {
            bail!("`--url` must start with http:// or https://, got `{url}`")
        }
        Some(url) => Ok(Ok(url.trim_end_matches('/').to_owned())),
        None if looks_like_url(&args.target) => {
            Ok(Ok(args.target.trim_end_matches('/').to_owned()))
        }
        None => Ok(Err(PathBuf::from(&args.target))),
    }
}

pub(crate) fn run(args: &DevArgs) -> anyhow::Result<Outcome> {
    let target = target(args)?;
    let credentials = Credentials::from_args(args)?;
    runtime()?.block_on(async {
        let stop = CancellationToken::new();
        let (base, server) = match target {
            Ok(url) => (url, None),
            Err(dir) => {
                // Request lines would interleave with the conversation: warnings only.
                init_logging(tracing::Level::WARN);
                let store = StoreChoice::from_arg(args.store.as_deref(), || {
                    StoreChoice::Sqlite(harness::default_store(&dir))
                })?;
                let harness = harness::start(&dir, store, &args.store_args, false).await?;
                let root = harness.engine.spec().root();
                if !root.auth.is_empty() && credentials.is_none() {
                    bail!(
                        "the agent requires credentials (`[[auth.strategies]]` in agent.toml); run `ash dev --basic USER` (password from ASH_PASSWORD or a prompt) or `ash dev --token` (token from ASH_TOKEN or a prompt)"
                    );
                }
                harness::check_access(&harness, &ServerConfig::default())?;
                crate::cmd::start::raise_open_files();
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
                    .await
                    .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
                let addr = listener.local_addr()?;
                output::note(&format!(
                    "ash dev: `{}` on http://{addr} (model {}, store {})",
                    harness.engine.spec().name(),
                    harness.model,
                    harness.store
                ));
                if harness.scripted {
                    output::note(&harness::scripted_label(&harness.model));
                }
                let engine = harness.engine.clone();
                let shutdown = stop.clone().cancelled_owned();
                let task = tokio::spawn(async move {
                    let served =
                        ash_server::serve(listener, engine, ServerConfig::default(), shutdown)
                            .await;
                    drop(harness);
                    served
                });
                (format!("http://{addr}"), Some(task))
            }
        };
        let result = repl(&base, credentials.as_ref()).await;
        stop.cancel();
        if let Some(task) = server {
            task.await.context("the server task failed")?.context("serving HTTP")?;
        }
        result.map(|()| Outcome::Success)
    })
}

async fn repl(base: &str, credentials: Option<&Credentials>) -> anyhow::Result<()> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(credentials) = credentials {
        headers.insert(reqwest::header::AUTHORIZATION, credentials.header()?);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("starting the HTTP client")?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        output::note("Type a message; /help for commands.");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut token: Option<String> = None;
    let mut last: Option<(String, String)> = None;
    loop {
        if interactive {
            output::note_partial("you> ");
        }
        let line = tokio::select! {
            line = lines.next_line() => line.context("reading stdin")?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        let message = line.trim();
        match message {
            "" => continue,
            "/quit" | "/exit" => break,
            "/help" => {
                output::note(HELP);
                continue;
            }
            "/new" => {
                token = None;
                last = None;
                output::note("(new session)");
                continue;
            }
            "/resume" => {
                let Some((run_id, stream_path)) = last.clone() else {
                    output::note("(no run to resume yet)");
                    continue;
                };
                match resume(&http, base, &run_id, &stream_path, &mut lines).await {
                    Ok(left) => token = left.token,
                    Err(error) => output::note(&format!("error: {error:#}")),
                }
                continue;
            }
            _ if message.starts_with('/') => {
                output::note(&format!("unknown command `{message}`; /help lists them"));
                continue;
            }
            _ => {}
        }
        match turn(&http, base, message, token.as_deref(), &mut lines).await {
            Ok(left) => {
                token = left.token;
                last = Some((left.run_id, left.stream_path));
            }
            Err(error) => output::note(&format!("error: {error:#}")),
        }
    }
    Ok(())
}

/// An error answer as a message that says what to do.
async fn refused(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ApiError>(&text) {
        Ok(error) if status == reqwest::StatusCode::UNAUTHORIZED => anyhow::anyhow!(
            "{} ({}); pass `--basic USER` (password from ASH_PASSWORD or a prompt) or `--token` (from ASH_TOKEN or a prompt)",
            error.error,
            error.code
        ),
        Ok(error) => anyhow::anyhow!("{} ({})", error.error, error.code),
        Err(_) => anyhow::anyhow!("the server answered {status}: {text}"),
    }
}

/// POSTs `body` (as JSON, when there is one) to the API route `path` of `base`: the answer
/// when it succeeded, else what the server refused and why.
async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Option<&impl serde::Serialize>,
) -> anyhow::Result<reqwest::Response> {
    let mut request = http.post(format!("{base}{API_PREFIX}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.with_context(|| format!("cannot reach {base}"))?;
    if !response.status().is_success() {
        return Err(refused(response).await);
    }
    Ok(response)
}

/// `/resume`: asks the server to continue the paused run, then follows it.
async fn resume(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    stream_path: &str,
    lines: &mut Input,
) -> anyhow::Result<Left> {
    let response = post(http, base, &format!("/runs/{run_id}/resume"), None::<&()>).await?;
    let continues: RunContinues = response.json().await.context("reading the server's answer")?;
    follow(http, base, run_id, stream_path, continues.start_index, lines).await
}

/// Sends one message and renders its turn.
async fn turn(
    http: &reqwest::Client,
    base: &str,
    message: &str,
    token: Option<&str>,
    lines: &mut Input,
) -> anyhow::Result<Left> {
    let body = MessageRequest {
        message: message.to_owned(),
        continuation_token: token.map(str::to_owned),
        mode: None,
    };
    let response = post(http, base, "/message", Some(&body)).await?;
    let accepted: MessageAccepted = response.json().await.context("reading the server's answer")?;
    let run_id = accepted.run_id.clone();
    follow(http, base, &run_id, &accepted.stream_path, accepted.start_index, lines).await
}

/// Renders `run_id`'s events from `start` until the session waits or ends, asking the person
/// about every call that waits for approval.
async fn follow(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    stream_path: &str,
    start: u64,
    lines: &mut Input,
) -> anyhow::Result<Left> {
    let left = |token: Option<String>| Left {
        token,
        run_id: run_id.to_owned(),
        stream_path: stream_path.to_owned(),
    };
    let mut next = start;
    let mut reconnects = 0;
    let mut cancelled = false;
    let mut asked: Option<InputRequested> = None;
    loop {
        let url = format!("{base}{stream_path}?startIndex={next}");
        let stream = http.get(&url).send().await.and_then(reqwest::Response::error_for_status);
        let mut bytes = match stream {
            Ok(response) => response.bytes_stream(),
            Err(error) if reconnects < RECONNECTS => {
                reconnects += 1;
                output::note(&format!("(stream lost: {error}; reconnecting)"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(error) => return Err(error).context("reading the event stream"),
        };
        let mut split = LineSplitter::default();
        loop {
            let chunk = tokio::select! {
                chunk = bytes.next() => chunk,
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    cancelled = true;
                    output::note("(cancelling)");
                    http.post(format!("{base}{API_PREFIX}/runs/{run_id}/cancel"))
                        .send()
                        .await
                        .context("asking the server to cancel")?;
                    continue;
                }
            };
            let Some(Ok(chunk)) = chunk else { break };
            for line in split.push(&chunk)? {
                let Ok(event) = serde_json::from_slice::<Event>(&line) else { continue };
                next = event.meta.index + 1;
                let rendered = render::lines(&event.body, true);
                for progress in rendered.progress {
                    output::note(&format!("  {progress}"));
                }
                if let Some(reply) = rendered.reply {
                    output::stdout(&format!("{}\n", reply.trim_end()));
                }
                match event.body {
                    EventBody::InputRequested(request) => asked = Some(request),
                    EventBody::SessionWaiting(waiting) => match (waiting.reason, asked.take()) {
                        (Some(reason), Some(request)) if reason.code == "input_required" => {
                            approve(http, base, run_id, &request, lines).await?;
                        }
                        (Some(reason), _) => {
                            output::note(&format!(
                                "(paused: {}; raise the limit, restart the server, then /resume)",
                                reason.message.split("; raise").next().unwrap_or_default()
                            ));
                            return Ok(left(Some(waiting.continuation_token)));
                        }
                        (None, _) => return Ok(left(Some(waiting.continuation_token))),
                    },
                    EventBody::RunCompleted(_) | EventBody::RunFailed(_) => return Ok(left(None)),
                    _ => {}
                }
            }
        }
        if reconnects >= RECONNECTS {
            bail!("the event stream kept closing; the run goes on on the server ({run_id})");
        }
        reconnects += 1;
    }
}

/// Asks the person whether `request`'s call may run and posts the answer.
async fn approve(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    request: &InputRequested,
    lines: &mut Input,
) -> anyhow::Result<()> {
    output::note(&format!(
        "  ? `{}` wants to run with {} ({})",
        request.tool_name, request.input, request.reason
    ));
    output::note_partial("  approve? [y/N] ");
    let line = lines.next_line().await.context("reading stdin")?.unwrap_or_default();
    let line = line.trim();
    let approve = matches!(line, "y" | "Y" | "yes");
    let message = line
        .strip_prefix("n ")
        .or_else(|| line.strip_prefix("no "))
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty());
    let body = InputAnswer {
        request_id: request.request_id.clone(),
        decision: if approve { "approve" } else { "deny" }.to_owned(),
        message,
    };
    post(http, base, &format!("/runs/{run_id}/input"), Some(&body)).await?;
    Ok(())
}

/// The longest event line taken from a server's stream; a longer one ends the stream with an
/// error instead of growing without end.
const MAX_EVENT_LINE: usize = 16 << 20;

/// Cuts an NDJSON byte stream into lines, holding at most [`MAX_EVENT_LINE`] bytes of a line
/// not yet ended, and looking at each byte once.
#[derive(Debug, Default)]
struct LineSplitter {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already known to hold no newline.
    scanned: usize,
}

impl LineSplitter {
    /// The lines `chunk` completes (without their newlines).
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        self.buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(at) = self.buffer[from..].iter().position(|b| *b == b'\n') {
            let end = from + at;
            lines.push(self.buffer[start..end].to_vec());
            start = end + 1;
            from = start;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        if self.buffer.len() > MAX_EVENT_LINE {
            bail!(
                "the server sent an event line of more than {} MiB; the stream was closed (the run goes on on the server)",
                MAX_EVENT_LINE >> 20
            );
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_an_endless_line_is_refused() {
        let mut split = LineSplitter::default();
        assert_eq!(split.push(b"{\"a\"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            split.push(b":1}\n{\"b\":2}\n{").unwrap(),
            [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert_eq!(split.push(b"}\n").unwrap(), [b"{}".to_vec()]);
        // A hostile server's line that never ends: refused once it passes the limit.
        let mut split = LineSplitter::default();
        let chunk = vec![b'x'; 1 << 20];
        let mut refused = None;
        for n in 0..20 {
            if let Err(e) = split.push(&chunk) {
                refused = Some((n, e.to_string()));
                break;
            }
        }
        let (n, message) = refused.expect("refused");
        assert_eq!(n, 16);
        assert!(message.contains("more than 16 MiB"), "{message}");
    }
}
