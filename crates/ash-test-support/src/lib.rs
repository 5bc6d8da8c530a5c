//! Test fixtures and fakes for ash. A dev-dependency only; never linked into the binary.
//!
//! Owns the multi-file fixture format (`Fixture`) and the fake model server
//! (`FakeModelServer`), which speaks the real OpenAI Chat Completions, OpenAI Responses and
//! Anthropic Messages wire formats over loopback HTTP with server-sent events, replays scripted replies (text,
//! reasoning, parallel tool calls, usage, errors, rate limits, slow and dropped streams) and
//! records every request; and `store_conformance`, the suite every `ash_core::Store` must pass.
//! `mcp` finds the real MCP servers the connection tests run (installed by `.ci/run`);
//! `postgres` hands out databases on the shared PostgreSQL server and starts private clusters.
//! Panics on misuse, because a broken fixture is a broken test.
#![allow(clippy::expect_used, clippy::panic, reason = "test support fails the test loudly")]

mod fake_model;
mod fixture;
pub mod mcp;
pub mod postgres;
pub mod store_conformance;

pub use fake_model::{FakeModelServer, RecordedRequest, Reply, Turn, TurnPart, WireUsage};
pub use fixture::{Fixture, parse, test_switch};
