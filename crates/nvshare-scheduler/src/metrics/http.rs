//! A minimal HTTP/1.1 responder for Prometheus scrapes: `GET /metrics`, one
//! request per connection, served in turn on one thread.

use super::Metrics;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A scraper that has not sent its request (or read the answer) by then is
/// dropped, so one stuck peer cannot hold the responder for long.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests larger than this are refused.
const MAX_REQUEST: usize = 8 << 10;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` now (so a busy port fails at startup) and serves `metrics`
/// from a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(err) = answer(stream, &metrics) {
                            tracing::debug!(%err, "metrics request failed");
                        }
                    }
                    Err(err) => tracing::warn!(%err, "accepting a metrics connection failed"),
                }
            }
        })?;
    Ok(local)
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    stream.set_read_timeout(Some(PEER_TIMEOUT))?;
    stream.set_write_timeout(Some(PEER_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let response = respond(&head, metrics);
    stream.write_all(&response)?;
    stream.flush()
}

/// Reads up to the end of the request head (the blank line).
fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The whole HTTP response for a request head.
fn respond(head: &str, metrics: &Metrics) -> Vec<u8> {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => response("200 OK", CONTENT_TYPE, &metrics.encode()),
        ("GET", "/") => response(
            "200 OK",
            "text/plain; charset=utf-8",
            "nvshare-scheduler: metrics at /metrics\n",
        ),
        ("GET", _) => response("404 Not Found", "text/plain", "not found: try /metrics\n"),
        _ => response(
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n",
        ),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn serves_metrics_and_refuses_the_rest() {
        let metrics = Arc::new(Metrics::new());
        metrics.clients.set(2);
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics).unwrap();

        let reply = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.contains(CONTENT_TYPE));
        assert!(reply.contains("nvshare_clients 2\n"), "{reply}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap();
        assert!(reply.contains(&format!("Content-Length: {}\r\n", body.len())));

        assert!(get(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(addr, "\r\n\r\n").starts_with("HTTP/1.1 405"));
    }

    #[test]
    fn a_busy_port_is_an_error_at_startup() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(serve(addr, Arc::new(Metrics::new())).is_err());
    }
}
