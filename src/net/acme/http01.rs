//! The http-01 responder on `acme_http_listen`: `GET
//! /.well-known/acme-challenge/TOKEN` answers the pending key
//! authorization, anything else 404. At most [`MAX_CONNECTIONS`] at a
//! time, each with [`TIMEOUT`] to send its request line; the headers and
//! body are not read (the CA's request has none that matter).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::challenge::Challenges;

pub const MAX_CONNECTIONS: usize = 64;
pub const TIMEOUT: Duration = Duration::from_secs(5);
const PREFIX: &str = "/.well-known/acme-challenge/";

/// Binds `addr`; the returned task serves until `stop`.
pub async fn bind(
    addr: SocketAddr,
    challenges: Arc<Challenges>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = crate::net::stopped(&mut stop) => return,
            };
            let Ok((stream, _)) = accepted else {
                continue;
            };
            // Over the cap: close at once rather than queue.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let challenges = challenges.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(TIMEOUT, answer(stream, &challenges)).await;
                drop(permit);
            });
        }
    };
    Ok((bound, task))
}

async fn answer(stream: TcpStream, challenges: &Challenges) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // The request line only, and no longer than a token could need.
    let mut limited = (&mut reader).take(1024);
    limited.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let found = match (method, target) {
        (Some("GET"), Some(t)) => t.strip_prefix(PREFIX).and_then(|tok| {
            let ok = !tok.is_empty()
                && tok
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            ok.then(|| challenges.http_answer(tok)).flatten()
        }),
        _ => None,
    };
    let (status, body) = match found {
        Some(k) => ("200 OK", k),
        None => ("404 Not Found", "not found\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}
