//! OTLP trace export (issue 28 §2), through the real binary: with
//! `[telemetry] otlp_endpoint` set, a request's span reaches a collector
//! (a listener of the test's that reads OTLP/HTTP posts) in the trace of
//! the `traceparent` it carried, as a child of the caller's span.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Backend, Setup};
use crate::ops::Binary;

/// One POST the collector received.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A collector of OTLP/HTTP posts on a free port: answers each with 200
/// and keeps it.
fn collector() -> (u16, Arc<Mutex<Vec<Post>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let kept = posts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                // Keep-alive: one request after another on the connection.
                while let Some(post) = read_post(&mut reader) {
                    kept.lock().unwrap().push(post);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if out.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, posts)
}

/// One HTTP/1.1 request with a `content-length` body; `None` at the end of
/// the connection.
fn read_post(reader: &mut BufReader<std::net::TcpStream>) -> Option<Post> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let (mut length, mut content_type) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => value.trim().clone_into(&mut content_type),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Post {
        path,
        content_type,
        body,
    })
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request with a `traceparent` gives a span in that trace, whose parent
/// is the caller's span, named `request`; a request without one starts a
/// trace whose id is its request id in the log. The last spans are sent
/// when the server stops on SIGTERM.
#[actix_web::test]
async fn spans_reach_the_collector_in_the_callers_trace() {
    let (port, posts) = collector();
    let setup = Setup::new(Backend::Sqlite);
    let mut b = Binary::start(&setup, |c| {
        c["telemetry"] = json!({"otlp_endpoint": format!("http://127.0.0.1:{port}")});
    })
    .await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let http = b.srv.client(None);
    let res = http
        .get(b.srv.url("/.well-known/openid-configuration"))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http.get(b.srv.url("/jwks")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    b.signal(libc::SIGTERM);
    assert_eq!(
        b.exit_within(Duration::from_secs(20)).await,
        0,
        "{}",
        b.log_text()
    );

    let posts = posts.lock().unwrap().clone();
    assert!(!posts.is_empty(), "no export: {}", b.log_text());
    for p in &posts {
        assert_eq!(p.path, "/v1/traces");
        assert_eq!(p.content_type, "application/x-protobuf");
    }
    let body: Vec<u8> = posts.iter().flat_map(|p| p.body.clone()).collect();
    // The span (opentelemetry/proto/trace/v1/trace.proto, fields in
    // order): trace_id (1) = the caller's, span_id (2), parent_span_id
    // (4) = the caller's span, name (5) = "request".
    let mut span = vec![0x0a, 16];
    span.extend(hex(trace));
    let at = find(&body, &span).expect("a span in the caller's trace");
    let rest = &body[at + span.len()..];
    assert_eq!(&rest[..2], &[0x12, 8], "span_id");
    let mut linked = vec![0x22, 8];
    linked.extend(hex(parent));
    linked.extend([0x2a, 7]);
    linked.extend(b"request");
    assert_eq!(&rest[10..10 + linked.len()], &linked[..], "parent and name");

    let log = b.log_text();
    let jwks_line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["target"] == "strongroom::access" && l["span"]["route"] == "/jwks")
        .expect("the JWKS request's access line");
    let id = jwks_line["span"]["request_id"].as_str().unwrap();
    assert_ne!(id, trace);
    let mut own = vec![0x0a, 16];
    own.extend(hex(id));
    assert!(
        find(&body, &own).is_some(),
        "the request id {id} is no exported trace"
    );
}
