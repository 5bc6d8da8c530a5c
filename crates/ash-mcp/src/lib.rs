//! The Model Context Protocol for ash, on the `rmcp` SDK.
//!
//! Owns the client side — [`Client`], one session with a server an agent connects to, over a
//! process's pipes (the process itself is started by `ash-sandbox`, never here) or streamable
//! HTTP — and the shape of what comes back ([`ToolOutput`]: the result as MCP spells it, the
//! model's text and images, within bounds). Also owns the server side: an agent offered to
//! other MCP clients as one tool ([`server`]).
//!
//! Never spawns a process, reads the environment or knows about connection files, engines or
//! stores: callers hand it streams, URLs, headers and an [`server::Agent`].

mod client;
mod content;
mod error;
pub mod server;

pub use client::{
    Client, MAX_LINE_BYTES, MAX_SCHEMA_BYTES, MAX_TOOLS, Progress, RemoteTool, ServerInfo,
};
pub use content::{
    MAX_BINARY_BYTES, MAX_IMAGE_BYTES, MAX_IMAGES, MAX_MODEL_TEXT_BYTES, ToolOutput,
};
pub use error::{CallError, McpError};
