//! containerd's own API, asked over its unix socket: the `containerd.services.containers.v1.
//! Containers` gRPC service's `Get` and `List`, in the `k8s.io` namespace (where kubelet's
//! containers live; the `containerd-namespace` metadata header chooses it).
//!
//! gRPC is spoken by hand on h2 (already in the agent's build for awc): one HTTP/2 stream per
//! call, a 5-byte length prefix on the one message each way, the status from `grpc-status`
//! (trailers, or the headers of a trailers-only answer). That is all a unary call is; tonic
//! and prost would add a stack of crates (tower, hyper, prost-derive, a protoc build step) for
//! two messages. Every call has a deadline and an answer is read up to a cap, so a wedged or
//! hostile socket costs a bounded wait and bounded memory.
//!
//! Not for: caching (`runtime.rs`), or what the labels mean (`labels.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::protobuf::{self, DecodeError, RuntimeContainer};

/// Largest answer read (a `List` carries every container's OCI spec, ~10-30 KiB each).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// gRPC status code NOT_FOUND.
const GRPC_NOT_FOUND: u32 = 5;

/// Why a call to the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("connecting to {socket}: {source}")]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("HTTP/2 with {socket}: {source}")]
    Http2 { socket: PathBuf, source: h2::Error },
    #[error("{socket} did not answer within {timeout:?}")]
    Timeout { socket: PathBuf, timeout: Duration },
    #[error("{socket} answered HTTP status {status}, not gRPC")]
    NotGrpc { socket: PathBuf, status: u16 },
    #[error("{method}: gRPC status {code}: {message}")]
    Status { method: &'static str, code: u32, message: String },
    #[error("{method}: answer over {MAX_ANSWER_BYTES} bytes")]
    TooLarge { method: &'static str },
    #[error("{method}: bad gRPC frame: {reason}")]
    Frame { method: &'static str, reason: &'static str },
    #[error("{method}: {source}")]
    Decode { method: &'static str, source: DecodeError },
}

/// A client of one containerd socket and namespace.
#[derive(Debug, Clone)]
pub struct ContainerdClient {
    socket: PathBuf,
    namespace: String,
    timeout: Duration,
}

impl ContainerdClient {
    /// `timeout` bounds each call (connect, ask, read the whole answer).
    pub fn new(socket: &Path, namespace: &str, timeout: Duration) -> ContainerdClient {
        ContainerdClient { socket: socket.to_path_buf(), namespace: namespace.to_owned(), timeout }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every container of the namespace.
    pub async fn list(&self) -> Result<Vec<RuntimeContainer>, RuntimeError> {
        const M: &str = "List";
        let msg = self.call(M, protobuf::encode_list_request()).await?;
        let msg =
            msg.ok_or(RuntimeError::Status { method: M, code: GRPC_NOT_FOUND, message: "namespace".into() })?;
        protobuf::decode_list_response(&msg).map_err(|source| RuntimeError::Decode { method: M, source })
    }

    /// One container, `None` when the runtime does not know it.
    pub async fn get(&self, id: &str) -> Result<Option<RuntimeContainer>, RuntimeError> {
        const M: &str = "Get";
        let Some(msg) = self.call(M, protobuf::encode_get_request(id)).await? else { return Ok(None) };
        protobuf::decode_get_response(&msg).map_err(|source| RuntimeError::Decode { method: M, source })
    }

    /// One unary call; `Ok(None)` for NOT_FOUND.
    async fn call(&self, method: &'static str, msg: Vec<u8>) -> Result<Option<Vec<u8>>, RuntimeError> {
        match tokio::time::timeout(self.timeout, self.call_inner(method, msg)).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout { socket: self.socket.clone(), timeout: self.timeout }),
        }
    }

    async fn call_inner(&self, method: &'static str, msg: Vec<u8>) -> Result<Option<Vec<u8>>, RuntimeError> {
        let h2err = |source| RuntimeError::Http2 { socket: self.socket.clone(), source };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| RuntimeError::Connect { socket: self.socket.clone(), source })?;
        let (send, conn) = h2::client::handshake(stream).await.map_err(h2err)?;
        // The connection is driven by a task of its own for the length of this call.
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = async {
            let mut send = send.ready().await.map_err(h2err)?;
            let uri = format!("http://localhost/containerd.services.containers.v1.Containers/{method}");
            let req = http::Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("containerd-namespace", self.namespace.as_str())
                .body(())
                .map_err(|_| RuntimeError::Frame {
                    method,
                    reason: "namespace is not a valid header value",
                })?;
            let (answer, mut body_out) = send.send_request(req, false).map_err(h2err)?;
            body_out.send_data(Bytes::from(grpc_frame(&msg)), true).map_err(h2err)?;
            let answer = answer.await.map_err(h2err)?;
            let status = answer.status().as_u16();
            if status != 200 {
                return Err(RuntimeError::NotGrpc { socket: self.socket.clone(), status });
            }
            let (parts, mut body) = answer.into_parts();
            let mut buf = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(h2err)?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if buf.len() + chunk.len() > MAX_ANSWER_BYTES + 5 {
                    return Err(RuntimeError::TooLarge { method });
                }
                buf.extend_from_slice(&chunk);
            }
            let trailers = body.trailers().await.map_err(h2err)?;
            // A trailers-only answer (an error before any message) has the status in its headers.
            let (code, message) = grpc_status(trailers.as_ref().unwrap_or(&parts.headers))
                .or_else(|| grpc_status(&parts.headers))
                .ok_or(RuntimeError::Frame { method, reason: "no grpc-status" })?;
            match code {
                0 => unframe(&buf).map(Some).map_err(|reason| RuntimeError::Frame { method, reason }),
                GRPC_NOT_FOUND => Ok(None),
                code => Err(RuntimeError::Status { method, code, message }),
            }
        }
        .await;
        driver.abort();
        result
    }
}

/// One uncompressed gRPC message: flag 0, u32 big-endian length, the bytes.
fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 5);
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// The one message of a unary answer's body.
fn unframe(buf: &[u8]) -> Result<Vec<u8>, &'static str> {
    let head = buf.get(..5).ok_or("answer shorter than a message prefix")?;
    if head[0] != 0 {
        return Err("compressed message (none was asked for)");
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let body = &buf[5..];
    if body.len() != len {
        return Err("message length does not match the body");
    }
    Ok(body.to_vec())
}

fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = h.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("").to_owned();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let f = grpc_frame(b"abc");
        assert_eq!(f, [0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(unframe(&f).unwrap(), b"abc");
        assert_eq!(unframe(&[0, 0, 0, 0, 0]).unwrap(), b"");
        assert!(unframe(&[0, 0, 0]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err());
        assert!(unframe(&[0, 0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn an_absent_socket_is_an_error_that_names_it() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let c = ContainerdClient::new(
            Path::new("/nonexistent/containerd.sock"),
            "k8s.io",
            Duration::from_secs(1),
        );
        let e = rt.block_on(c.list()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/containerd.sock"), "{e}");
    }
}
