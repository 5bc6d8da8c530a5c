//! The bytes of requests and answers between two peers: CBOR envelopes, with the size limits
//! read before anything is decoded. Unlike libp2p's own CBOR codec, a request that is too
//! large or does not decode still reaches the event loop (as [`Incoming::Unreadable`]), so that
//! the peer who sent it is struck rather than forgotten.

use std::io;

use futures_util::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::behaviour::{RequestEnvelope, ResponseEnvelope};
use crate::config::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

/// A request as read from a peer.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// It decoded.
    Request(RequestEnvelope),
    /// It did not: too large, or not a request. Why.
    Unreadable(String),
}

/// The request-response codec of the network's protocol.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codec;

/// Reads at most `max` bytes from `io` (one more tells that there was more).
async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(max + 1).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

fn decode<V: DeserializeOwned>(bytes: &[u8], max: u64, what: &str) -> Result<V, String> {
    if bytes.len() as u64 > max {
        return Err(format!("{what} larger than {max} bytes"));
    }
    cbor4ii::serde::from_slice(bytes).map_err(|e| format!("{what} that does not decode: {e}"))
}

async fn write<T: AsyncWrite + Unpin + Send, V: Serialize>(
    io: &mut T,
    value: &V,
) -> io::Result<()> {
    let bytes = cbor4ii::serde::to_vec(Vec::new(), value).map_err(io::Error::other)?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Incoming;
    type Response = ResponseEnvelope;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Incoming>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_REQUEST_BYTES).await?;
        Ok(match decode(&bytes, MAX_REQUEST_BYTES, "a request") {
            Ok(request) => Incoming::Request(request),
            Err(reason) => Incoming::Unreadable(reason),
        })
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ResponseEnvelope>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_RESPONSE_BYTES).await?;
        if bytes.is_empty() {
            // The peer closed the stream without answering (it may not have read the request).
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"));
        }
        decode(&bytes, MAX_RESPONSE_BYTES, "an answer")
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidData, reason))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Incoming,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            Incoming::Request(envelope) => write(io, &envelope).await,
            Incoming::Unreadable(reason) => Err(io::Error::other(reason)),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: ResponseEnvelope,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write(io, &response).await
    }
}
