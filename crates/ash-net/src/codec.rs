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
    /// A well-formed envelope of a request type this version does not know (a newer peer's):
    /// its id and type, answered `unsupported`.
    Unknown {
        /// The id the answer echoes.
        id: u64,
        /// The type it names.
        kind: String,
    },
    /// It did not decode: too large, or not a request. Why.
    Unreadable(String),
}

/// Just enough of a CBOR map tagged by `type` to name its type.
#[derive(serde::Deserialize)]
pub(crate) struct Tagged {
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

#[derive(serde::Deserialize)]
struct TaggedEnvelope {
    id: u64,
    body: Tagged,
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
            Err(reason) => match decode::<TaggedEnvelope>(&bytes, MAX_REQUEST_BYTES, "a request") {
                Ok(envelope)
                    if !ash_protocol::REQUEST_TYPES.contains(&envelope.body.kind.as_str()) =>
                {
                    Incoming::Unknown { id: envelope.id, kind: envelope.body.kind }
                }
                // A known type that does not decode, or no envelope at all.
                _ => Incoming::Unreadable(reason),
            },
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
            Incoming::Unknown { kind, .. } => Err(io::Error::other(kind)),
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

#[cfg(test)]
mod tests {
    use libp2p::request_response::Codec as _;

    use super::*;

    async fn read(bytes: Vec<u8>) -> Incoming {
        let protocol = StreamProtocol::new("/ash/test/request/1");
        let mut io = futures_util::io::Cursor::new(bytes);
        Codec.read_request(&protocol, &mut io).await.unwrap()
    }

    fn cbor(value: &serde_json::Value) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), value).unwrap()
    }

    #[tokio::test]
    async fn requests_are_read_refused_or_left_to_newer_peers_by_what_they_are() {
        let cases = [
            (serde_json::json!({ "id": 7, "body": { "type": "info" } }), "request 7"),
            // Unknown fields are tolerated.
            (serde_json::json!({ "id": 7, "body": { "type": "info", "later": 1 } }), "request 7"),
            (
                serde_json::json!({ "id": 8, "body": { "type": "job_bid", "price": 3 } }),
                "unknown 8 job_bid",
            ),
            // A type this version knows, with fields that do not fit it, is not a newer peer's.
            (
                serde_json::json!({ "id": 9, "body": { "type": "ledger_heads", "limit": "x" } }),
                "unreadable",
            ),
            (serde_json::json!({ "body": { "type": "info" } }), "unreadable"),
            (serde_json::json!([1, 2, 3]), "unreadable"),
        ];
        for (value, expected) in cases {
            let got = match read(cbor(&value)).await {
                Incoming::Request(envelope) => format!("request {}", envelope.id),
                Incoming::Unknown { id, kind } => format!("unknown {id} {kind}"),
                Incoming::Unreadable(_) => "unreadable".to_owned(),
            };
            assert_eq!(got, expected, "{value}");
        }
        let huge = cbor(&serde_json::json!({ "id": 1, "body": { "type": "ledger_checkpoints",
            "subjects": vec!["ab".repeat(32); 2000] } }));
        assert!(
            matches!(read(huge).await, Incoming::Unreadable(r) if r == "a request larger than 65536 bytes")
        );
        assert!(matches!(read(vec![0xff; 10]).await, Incoming::Unreadable(_)));
    }
}
