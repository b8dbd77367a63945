//! Just enough HTTP/1.1 for the token authority: one request at a time per
//! connection, keep-alive, `Content-Length` bodies (no chunked uploads),
//! bounded head and body sizes.

use std::io;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest accepted request line plus headers.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A parsed request.
pub(crate) struct Request {
    pub method: String,
    /// The request target, query string included.
    pub target: String,
    /// Whether the connection may serve another request afterwards.
    pub keep_alive: bool,
    pub body: Vec<u8>,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// Why a request could not be read. The connection is closed afterwards.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// The peer went away or the socket failed.
    Io,
    Malformed,
    HeadTooLarge,
    BodyTooLarge,
    /// `Transfer-Encoding` (chunked uploads) is not supported.
    TransferEncoding,
}

impl RequestError {
    /// The response to attempt before closing, if any.
    pub fn response(&self) -> Option<Response> {
        let (status, error) = match self {
            Self::Io => return None,
            Self::Malformed => (400, "invalid_request"),
            Self::HeadTooLarge => (431, "invalid_request"),
            Self::BodyTooLarge => (413, "invalid_request"),
            Self::TransferEncoding => (501, "unsupported_transfer_encoding"),
        };
        Some(Response::json(status, &json!({ "error": error })))
    }
}

/// A complete response.
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Reads the next request; `Ok(None)` when the peer closed the connection
/// cleanly between requests.
pub(crate) async fn read_request<R>(reader: &mut R) -> Result<Option<Request>, RequestError>
where
    R: AsyncBufRead + Unpin,
{
    let mut budget = MAX_HEAD_BYTES;
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *reader)
            .take(budget)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|_| RequestError::Io)?;
        budget -= n as u64;
        if line.last() != Some(&b'\n') {
            return match (n, budget, lines.is_empty()) {
                (_, 0, _) => Err(RequestError::HeadTooLarge),
                (0, _, true) => Ok(None),
                _ => Err(RequestError::Io),
            };
        }
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerate blank lines before a request line
            }
            break;
        }
        lines.push(String::from_utf8(line).map_err(|_| RequestError::Malformed)?);
    }

    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(RequestError::Malformed),
    };
    let mut content_length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(RequestError::Malformed)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value.parse().map_err(|_| RequestError::Malformed)?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err(RequestError::Malformed);
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("connection") {
            let has = |option: &str| {
                value
                    .split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case(option))
            };
            keep_alive = !has("close") && (keep_alive || has("keep-alive"));
        }
    }

    let length = content_length.unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Err(RequestError::BodyTooLarge);
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|_| RequestError::Io)?;
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        keep_alive,
        body,
    }))
}

/// Writes `response`, announcing whether the connection stays open.
pub(crate) async fn write_response<W>(
    writer: &mut W,
    response: &Response,
    keep_alive: bool,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let status = response.status;
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut bytes = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    // 204 and 304 responses never carry a body.
    let body: &[u8] = if matches!(status, 204 | 304) {
        &[]
    } else {
        bytes.extend_from_slice(
            format!(
                "content-type: {}\r\ncontent-length: {}\r\n",
                response.content_type,
                response.body.len()
            )
            .as_bytes(),
        );
        &response.body
    };
    bytes.extend_from_slice(
        format!("cache-control: no-store\r\nconnection: {connection}\r\n\r\n").as_bytes(),
    );
    bytes.extend_from_slice(body);
    writer.write_all(&bytes).await?;
    writer.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8]) -> Result<Option<Request>, RequestError> {
        let mut reader = raw;
        read_request(&mut reader).await
    }

    #[tokio::test]
    async fn parses_requests_back_to_back() {
        let raw = b"POST /oauth/token?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut reader = &raw[..];
        let first = read_request(&mut reader).await.unwrap().unwrap();
        assert_eq!(
            (first.method.as_str(), first.path()),
            ("POST", "/oauth/token")
        );
        assert_eq!(first.body, b"{}");
        assert!(first.keep_alive);
        let second = read_request(&mut reader).await.unwrap().unwrap();
        assert_eq!(second.path(), "/healthz");
        assert!(!second.keep_alive);
        assert!(read_request(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_bad_requests() {
        assert!(matches!(
            parse(b"nonsense\r\n\r\n").await,
            Err(RequestError::Malformed)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").await,
            Err(RequestError::TransferEncoding)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n").await,
            Err(RequestError::BodyTooLarge)
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(matches!(
            parse(huge.as_bytes()).await,
            Err(RequestError::HeadTooLarge)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost").await,
            Err(RequestError::Io)
        ));
        let http10 = parse(b"GET / HTTP/1.0\r\n\r\n").await.unwrap().unwrap();
        assert!(!http10.keep_alive);
    }
}
