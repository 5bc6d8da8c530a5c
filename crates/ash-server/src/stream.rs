//! NDJSON framing of a run's events: one JSON object per line, heartbeats while idle.

use std::time::Duration;

use ash_core::Follower;
use ash_protocol::{HEARTBEAT_TYPE, Heartbeat, HeartbeatData};
use axum::body::Body;
use bytes::Bytes;

fn line(value: &impl serde::Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The response body: events from the follower as they come, a heartbeat line after every
/// `heartbeat` without one, ending after the run's terminal event or at shutdown.
/// The stream holds `permit` (one of the server's stream slots) until it ends.
pub(crate) fn body(
    follower: Follower,
    heartbeat: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Body {
    let lines = futures_util::stream::unfold(Some((follower, permit)), move |state| async move {
        let (mut follower, permit) = state?;
        match tokio::time::timeout(heartbeat, follower.next()).await {
            Ok(Ok(Some(event))) => {
                Some((Ok::<_, std::io::Error>(line(&event)), Some((follower, permit))))
            }
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                // Ending the body makes the client reconnect from its cursor.
                tracing::error!(%error, "cannot read events for a stream");
                None
            }
            Err(_) => {
                let beat = Heartbeat {
                    kind: HEARTBEAT_TYPE.to_owned(),
                    data: HeartbeatData { next_index: follower.next_index() },
                };
                Some((Ok(line(&beat)), Some((follower, permit))))
            }
        }
    });
    Body::from_stream(lines)
}
