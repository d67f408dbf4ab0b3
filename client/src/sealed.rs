//! One sealed request (DESIGN.md "Sealed requests", "Receipts and log"): the Ollama request JSON is
//! sealed for the attested encryption key (RSA path: a fresh content key wrapped with
//! RSAES-OAEP-SHA256), POSTed with the attestation document's digest, and the sealed stream is opened
//! chunk by chunk. Every data chunk handed to the caller has been authenticated; the final chunk is
//! the envelope, and its receipt must verify under the attested signing key and carry the salted
//! digests of exactly the request sent and the bytes received.

use crate::transport::{ATTESTATION_HEADER, Endpoint, plain_error};
use anyhow::{Context, anyhow, bail};
use http_body_util::BodyExt;
use rand_core::OsRng;
use secllama_protocol::attestation::VerifiedDocument;
use secllama_protocol::receipt::{ReceiptPayload, verify_receipt};
use secllama_protocol::seal::{
    ContentKey, RequestContext, RequestPlaintext, ResponseKeys, StreamOpener, seal_request,
    seal_request_session,
};
use std::time::Duration;

/// Longest wait for the next piece of a sealed stream.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How a sealed exchange ended (authenticated).
#[derive(Debug, Clone)]
pub enum SealedEnd {
    /// The runner answered; the receipt verified and its digests match.
    Receipt {
        /// The runner's HTTP status.
        status: u16,
        /// The verified receipt.
        receipt: ReceiptPayload,
        /// The receipt as received (COSE_Sign1).
        receipt_bytes: Vec<u8>,
    },
    /// The enclave refused or failed, inside the sealed channel.
    Problem {
        /// The HTTP status of the problem.
        status: u16,
        /// The RFC 9457 problem details.
        problem: serde_json::Value,
    },
}

/// The enclave answered outside the sealed channel (it could not open the request at all): e.g.
/// 409 when it no longer knows the attestation document the request was sealed for.
#[derive(Debug, thiserror::Error)]
#[error("POST {path}: HTTP {status} before the sealed channel: {detail}")]
pub struct PlainRefusal {
    /// The enclave path.
    pub path: String,
    /// The HTTP status.
    pub status: u16,
    /// The problem detail (or body) the enclave sent.
    pub detail: String,
}

/// A completed sealed exchange.
#[derive(Debug, Clone)]
pub struct SealedAnswer {
    /// The authenticated data bytes (the runner's answer).
    pub data: Vec<u8>,
    /// The final envelope.
    pub end: SealedEnd,
    /// The content key the request was sealed under (reusable as a session key).
    pub key: ContentKey,
    /// The request id, hex.
    pub request_id: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seals `body` for the attested enclave `doc`, POSTs it to `/v1/sealed{api_path}` (e.g.
/// `/api/generate`), hands every authenticated data chunk to `on_data` as it arrives, and checks the
/// final envelope. Any transport, decoding or authentication failure, a missing final chunk, a
/// receipt that does not verify or whose digests differ is an error. The caller must only trust
/// `doc` after an affirming appraisal.
pub async fn request(
    endpoint: &Endpoint,
    doc: &VerifiedDocument,
    api_path: &str,
    body: Vec<u8>,
    on_data: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<SealedAnswer> {
    request_with(endpoint, doc, api_path, body, None, |d: &[u8]| on_data(d)).await
}

/// [`request`], sealed under `session` (a content key an earlier request to the same document
/// established: no RSA on either side) when given.
pub async fn request_with<F: FnMut(&[u8]) -> anyhow::Result<()>>(
    endpoint: &Endpoint,
    doc: &VerifiedDocument,
    api_path: &str,
    body: Vec<u8>,
    session: Option<&ContentKey>,
    mut on_data: F,
) -> anyhow::Result<SealedAnswer> {
    let path = format!("/v1/sealed{api_path}");
    let ctx = RequestContext {
        method: "POST",
        path: &path,
        attestation_digest: doc.digest,
    };
    let pt = RequestPlaintext::new(body, now_ms(), &mut OsRng)?;
    let (sealed, key) = match session {
        Some(k) => (
            seal_request_session(k, &ctx, &pt, &mut OsRng).context("sealing the request")?,
            k.clone(),
        ),
        None => seal_request(&doc.payload.keys.encryption_spki, &ctx, &pt, &mut OsRng)
            .context("sealing the request")?,
    };
    let request_id = hex::encode(pt.id.0);
    let resp = endpoint
        .send(
            "POST",
            &path,
            Some((ATTESTATION_HEADER, doc.digest.to_hex())),
            sealed,
        )
        .await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(PlainRefusal {
            path,
            status: status.as_u16(),
            detail: plain_error(resp.into_body()).await,
        }
        .into());
    }
    let mut opener = StreamOpener::new(ResponseKeys::derive(&key, &pt.id)?);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    let mut envelope = None;
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| anyhow!("sealed stream: nothing for {IDLE_TIMEOUT:?}"))?;
        let Some(frame) = frame else { break };
        // The connection broke (reset, closed mid-body): the enclave became unreachable; what
        // arrived so far stays unverified.
        let frame = frame.map_err(|e| crate::transport::Unreachable {
            addr: format!("{:?}", endpoint.addr()),
            reason: format!("the sealed stream ended abnormally: {e}"),
        })?;
        let Ok(bytes) = frame.into_data() else {
            continue;
        };
        for chunk in opener.push(&bytes).context("opening the sealed stream")? {
            if chunk.last {
                envelope = Some(chunk.data);
            } else {
                data.extend_from_slice(&chunk.data);
                on_data(&chunk.data)?;
            }
        }
    }
    opener.finish().context("sealed stream")?;
    let envelope = envelope.ok_or_else(|| anyhow!("sealed stream: no final envelope"))?;
    let env: serde_json::Value =
        serde_json::from_slice(&envelope).context("sealed stream: final envelope is not JSON")?;
    let status = env
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| anyhow!("final envelope: expected a numeric status, found {env}"))?;
    if let Some(problem) = env.get("problem") {
        return Ok(SealedAnswer {
            data,
            end: SealedEnd::Problem {
                status,
                problem: problem.clone(),
            },
            key,
            request_id,
        });
    }
    let receipt_hex = env
        .get("receipt")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| anyhow!("final envelope: expected a receipt or a problem, found {env}"))?;
    let receipt_bytes = hex::decode(receipt_hex).context("final envelope: receipt is not hex")?;
    let receipt = verify_receipt(&receipt_bytes, &doc.payload.keys.signing)
        .context("receipt does not verify under the attested signing key")?;
    let sent = pt.salt.digest(&pt.body);
    if receipt.request_digest != sent {
        bail!(
            "receipt: request digest {} is not that of the request sent ({})",
            receipt.request_digest.to_hex(),
            sent.to_hex()
        );
    }
    let received = pt.salt.digest(&data);
    if receipt.response_digest != received {
        bail!(
            "receipt: response digest {} is not that of the bytes received ({})",
            receipt.response_digest.to_hex(),
            received.to_hex()
        );
    }
    Ok(SealedAnswer {
        data,
        end: SealedEnd::Receipt {
            status,
            receipt,
            receipt_bytes,
        },
        key,
        request_id,
    })
}
