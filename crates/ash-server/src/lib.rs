//! The harness HTTP API over an [`ash_core::Engine`]: the seed's routes under
//! `/.well-known/ash/v1`, inbound access control (IP allow list, trusted proxies, the agent's
//! auth strategies), NDJSON event streams with resume and heartbeats, JSON errors, one log
//! line per request, and graceful shutdown; and the agent as an MCP tool (`mcp`) at
//! `/.well-known/ash/v1/mcp`, behind the same gate.
//!
//! Owns HTTP concerns only: content types, body limits, status codes, headers, stream framing.
//! What a message does, how runs are stored and when a turn ends is `ash-core`'s.
//! Never reads the environment or spawns processes.

mod auth;
mod error;
pub mod mcp;
mod routes;
mod server;
mod stream;

pub use auth::{Denial, Gate, GateError, OidcConfig};
pub use routes::{ServeError, ServerConfig, router, serve};
