//! `tessera serve` over real sockets on 127.0.0.1: static files, rooms,
//! tokens, relay, limits. Every server here binds 127.0.0.1 port 0.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tessera_cli::serve::{self, ServeConfig, ServerHandle};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = WebSocketStream<TcpStream>;

/// A served root with pages, a wasm file and a secret beside them, in
/// cargo's scratch directory for integration tests (same content every time).
fn root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(make_root).clone()
}

fn make_root() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-root");
    std::fs::create_dir_all(d.join("www/css")).unwrap();
    std::fs::create_dir_all(d.join("pkg")).unwrap();
    std::fs::write(d.join("www/index.html"), "<!doctype html><title>tessera test page</title>").unwrap();
    std::fs::write(d.join("www/app.js"), "console.log(1)").unwrap();
    std::fs::write(d.join("www/css/site.css"), "body{}").unwrap();
    std::fs::write(d.join("pkg/tessera_web_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    // Stands for `./run`'s gzipped copy (the server does not look inside).
    std::fs::write(d.join("pkg/tessera_web_bg.wasm.gz"), b"GZIPPED-WASM").unwrap();
    std::fs::write(d.join("pkg/tessera_web.js"), "export default 1").unwrap();
    std::fs::write(d.join("secret.txt"), "TOP-SECRET").unwrap();
    d
}

fn server(f: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut cfg = ServeConfig { port: 0, root: root(), ..ServeConfig::default() };
    f(&mut cfg);
    serve::start(cfg).expect("server starts")
}

fn ws_path(h: &ServerHandle, query: &str) -> String {
    format!("ws://{}/ws{query}", h.addr)
}

async fn connect(url: &str) -> Ws {
    let authority = url.strip_prefix("ws://").unwrap().split('/').next().unwrap().to_string();
    let tcp = TcpStream::connect(authority).await.unwrap();
    tokio_tungstenite::client_async(url, tcp).await.expect("upgrade").0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next JSON text frame; `None` on close (or end of stream).
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s");
        match m {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the connection closes; returns the close code if one came.
async fn closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closes within 5 s") {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn join(h: &ServerHandle, role: &str, name: &str) -> (Ws, Value) {
    let mut ws = connect(&h.ws_url).await;
    send(&mut ws, json!({"type":"join","role":role,"name":name})).await;
    let w = next(&mut ws).await.expect("welcome");
    assert_eq!(w["type"], "welcome", "{w}");
    (ws, w)
}

#[tokio::test]
async fn join_with_token_and_relay_signals() {
    let h = server(|_| {});
    assert!(h.url.starts_with(&format!("http://{}/?room=", h.addr)));
    assert!(h.token.len() >= 24, "token has at least 96 bits");

    let (mut c, cw) = join(&h, "coordinator", "tab").await;
    let cid = cw["id"].as_u64().unwrap();
    assert_eq!(cw["coordinator"], cid);
    assert_eq!(cw["room"], h.room);
    assert_eq!(cw["peers"], json!([]));

    let (mut p, pw) = join(&h, "peer", "phone").await;
    let pid = pw["id"].as_u64().unwrap();
    assert_eq!(pw["coordinator"], cid);
    assert_eq!(pw["peers"], json!([{"id": cid, "name": "tab", "role": "coordinator"}]));
    let pj = next(&mut c).await.unwrap();
    assert_eq!(pj, json!({"type":"peer-joined","id":pid,"name":"phone","role":"peer"}));

    // Offer one way, answer and a candidate the other.
    let offer = json!({"type":"offer","sdp":"v=0\r\n"});
    send(&mut c, json!({"type":"signal","to":pid,"data":offer})).await;
    assert_eq!(next(&mut p).await.unwrap(), json!({"type":"signal","from":cid,"data":offer}));
    let cand =
        json!({"candidate":"candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0});
    send(&mut p, json!({"type":"signal","to":cid,"data":cand})).await;
    assert_eq!(next(&mut c).await.unwrap(), json!({"type":"signal","from":pid,"data":cand}));

    // To nobody, to oneself, a non-object: errors, and the connection stays.
    send(&mut c, json!({"type":"signal","to":99999,"data":{}})).await;
    assert_eq!(next(&mut c).await.unwrap()["code"], "unknown-peer");
    send(&mut c, json!({"type":"signal","to":cid,"data":{}})).await;
    assert_eq!(next(&mut c).await.unwrap()["code"], "unknown-peer");
    send(&mut c, json!({"type":"signal","to":pid,"data":"x"})).await;
    assert_eq!(next(&mut c).await.unwrap()["code"], "bad-message");
    send(&mut c, json!({"type":"join","role":"peer"})).await;
    assert_eq!(next(&mut c).await.unwrap()["code"], "already-joined");
    send(&mut c, json!({"type":"ping"})).await;
    assert_eq!(next(&mut c).await.unwrap(), json!({"type":"pong"}));

    // A second coordinator is refused.
    let mut c2 = connect(&h.ws_url).await;
    send(&mut c2, json!({"type":"join","role":"coordinator","name":"second"})).await;
    assert_eq!(next(&mut c2).await.unwrap()["code"], "coordinator-exists");
    assert_eq!(closed(&mut c2).await, Some(1008));

    // The coordinator leaves: the peer is told, with the role.
    c.close(None).await.unwrap();
    drop(c);
    assert_eq!(next(&mut p).await.unwrap(), json!({"type":"peer-left","id":cid,"role":"coordinator"}));
    // ... and a new coordinator may take the seat.
    let (_c3, w3) = join(&h, "coordinator", "new tab").await;
    assert_eq!(w3["peers"], json!([{"id": pid, "name": "phone", "role": "peer"}]));
    assert_eq!(next(&mut p).await.unwrap()["type"], "peer-joined");
}

#[tokio::test]
async fn no_token_or_a_wrong_one_means_no_join() {
    let h = server(|_| {});
    // No token anywhere: the join is refused.
    let mut ws = connect(&ws_path(&h, &format!("?room={}", h.room))).await;
    send(&mut ws, json!({"type":"join","role":"peer","name":"x"})).await;
    let e = next(&mut ws).await.unwrap();
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("unauthorized")), "{e}");
    assert_eq!(closed(&mut ws).await, Some(1008));

    // A wrong token in the URL: refused before anything is sent.
    let mut ws = connect(&ws_path(&h, &format!("?room={}&token={}", h.room, "0".repeat(32)))).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "unauthorized");
    assert_eq!(closed(&mut ws).await, Some(1008));

    // A wrong token in the join message.
    let mut ws = connect(&ws_path(&h, "")).await;
    send(&mut ws, json!({"type":"join","role":"peer","room":h.room,"token":"abc"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "unauthorized");

    // An unknown room.
    let mut ws = connect(&ws_path(&h, &format!("?room=nope&token={}", h.token))).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "unknown-room");

    // Anything but a join first.
    let mut ws = connect(&h.ws_url).await;
    send(&mut ws, json!({"type":"signal","to":1,"data":{}})).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "not-joined");
    assert_eq!(closed(&mut ws).await, Some(1008));

    // The token given in the join message (and not the URL) works.
    let mut ws = connect(&ws_path(&h, "")).await;
    send(&mut ws, json!({"type":"join","role":"peer","room":h.room,"token":h.token})).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "welcome");
    assert_eq!(h.members(), 1);
}

#[tokio::test]
async fn garbage_and_oversize_get_errors_and_the_server_keeps_serving() {
    let h = server(|c| c.max_message = 4096);
    let (mut other, _) = join(&h, "peer", "bystander").await;
    let (mut ws, _) = join(&h, "peer", "noisy").await;
    let _ = next(&mut other).await; // peer-joined

    for (frame, code) in [
        ("not json at all", "bad-message"),
        ("{\"no\":\"type\"}", "bad-message"),
        ("{\"type\":\"explode\"}", "unknown-type"),
        ("{\"type\":\"signal\",\"to\":\"x\"}", "bad-message"),
        ("[1,2,3]", "bad-message"),
        ("\u{0}\u{1}\u{2}", "bad-message"),
    ] {
        ws.send(Message::text(frame)).await.unwrap();
        let e = next(&mut ws).await.unwrap();
        assert_eq!(e["type"], "error");
        assert_eq!(e["code"], code, "{frame:?} → {e}");
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["code"], "binary-unsupported");
    send(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "pong");

    // Over the limit: an error frame, then a close (1009).
    let big = json!({"type":"signal","to":1,"data":{"sdp":"x".repeat(5000)}}).to_string();
    ws.send(Message::text(big)).await.unwrap();
    let e = next(&mut ws).await.unwrap();
    assert_eq!(e["code"], "too-large", "{e}");
    assert_eq!(closed(&mut ws).await, Some(1009));

    // Far over the limit (cut off by the WebSocket layer): closed, no crash.
    let (mut ws2, _) = join(&h, "peer", "huge").await;
    let _ = ws2.send(Message::text("y".repeat(1 << 20))).await;
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws2.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the huge sender is disconnected");

    // The bystander is served throughout.
    send(&mut other, json!({"type":"ping"})).await;
    loop {
        let m = next(&mut other).await.unwrap();
        if m["type"] == "pong" {
            break;
        }
        assert!(m["type"] == "peer-left" || m["type"] == "peer-joined", "{m}");
    }
    let (_again, w) = join(&h, "peer", "after").await;
    assert_eq!(w["type"], "welcome");
}

#[tokio::test]
async fn room_capacity_is_enforced() {
    let h = server(|c| c.room_capacity = 3);
    let (_a, _) = join(&h, "coordinator", "a").await;
    let (_b, _) = join(&h, "peer", "b").await;
    let (c, _) = join(&h, "peer", "c").await;
    let mut d = connect(&h.ws_url).await;
    send(&mut d, json!({"type":"join","role":"peer","name":"d"})).await;
    assert_eq!(next(&mut d).await.unwrap()["code"], "room-full");
    assert_eq!(closed(&mut d).await, Some(1008));
    // A seat frees up when someone leaves.
    drop(c);
    for _ in 0..50 {
        if h.members() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_d, w) = join(&h, "peer", "d").await;
    assert_eq!(w["peers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn flooding_is_rate_limited() {
    let h = server(|c| {
        // Slow refill, so the test does not depend on how fast it sends.
        c.rate = 1.0;
        c.burst = 20.0;
    });
    let (mut ws, _) = join(&h, "peer", "flood").await;
    for _ in 0..30 {
        send(&mut ws, json!({"type":"ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    loop {
        let m = tokio::time::timeout(Duration::from_millis(500), ws.next()).await;
        match m {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "pong" {
                    pongs += 1;
                } else if v["code"] == "rate-limited" {
                    limited += 1;
                }
            }
            _ => break,
        }
    }
    assert!(limited == 1, "one rate-limited error per streak, got {limited}");
    assert!((19..=21).contains(&pongs), "the burst (less the join) answered, got {pongs}");
    // A sustained flood is disconnected.
    for _ in 0..200 {
        if ws.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
            break;
        }
    }
    let mut saw_close = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        match m {
            Ok(Message::Close(_)) | Err(_) => {
                saw_close = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw_close);
}

#[tokio::test]
async fn silent_connections_time_out_and_shutdown_closes_everyone() {
    let h = server(|c| c.join_timeout = Duration::from_millis(300));
    let mut ws = connect(&h.ws_url).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "join-timeout");
    assert_eq!(closed(&mut ws).await, Some(1008));

    let (mut p, _) = join(&h, "peer", "p").await;
    std::thread::spawn(move || h.shutdown());
    assert_eq!(next(&mut p).await.unwrap()["code"], "shutdown");
}

/// A raw HTTP/1.1 GET (the path is sent exactly as given).
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    get_with(addr, path, "")
}

/// `get` with extra header lines (each ending in `\r\n`).
fn get_with(addr: std::net::SocketAddr, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), buf[split + 4..].to_vec())
}

#[test]
fn static_files_with_mime_types_and_no_traversal() {
    let h = server(|_| {});
    let (s, head, body) = get(h.addr, "/");
    assert_eq!(s, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("tessera test page"));
    let (s, head, _) = get(h.addr, &format!("/?room={}&token={}", h.room, h.token));
    assert_eq!(s, 200, "the join URL serves the page");
    assert!(head.contains("cache-control: no-cache"));

    let (s, head, body) = get(h.addr, "/pkg/tessera_web_bg.wasm");
    assert_eq!(s, 200);
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert_eq!(&body[..4], b"\0asm");
    // A browser that accepts gzip gets the gzipped copy, still typed as wasm.
    let (s, head, body) = get_with(h.addr, "/pkg/tessera_web_bg.wasm", "Accept-Encoding: gzip, deflate, br\r\n");
    assert_eq!(s, 200);
    assert!(head.contains("content-encoding: gzip") && head.contains("content-type: application/wasm"), "{head}");
    assert_eq!(body, b"GZIPPED-WASM");
    // Without a gzipped copy, the file as it is.
    let (_, head, _) = get_with(h.addr, "/pkg/tessera_web.js", "Accept-Encoding: gzip\r\n");
    assert!(!head.contains("content-encoding"), "{head}");
    let (_, head, _) = get(h.addr, "/pkg/tessera_web.js");
    assert!(head.contains("javascript"), "{head}");
    let (_, head, _) = get(h.addr, "/app.js");
    assert!(head.contains("javascript"), "{head}");
    let (s, head, _) = get(h.addr, "/css/site.css");
    assert_eq!(s, 200);
    assert!(head.contains("text/css"), "{head}");
    assert_eq!(get(h.addr, "/missing.html").0, 404);

    for evil in [
        "/../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/pkg/../secret.txt",
        "/pkg/..%2f..%2fsecret.txt",
        "/pkg/%2e%2e/%2e%2e/secret.txt",
        "/css/..%5c..%5csecret.txt",
        "//etc/passwd",
        "/pkg//etc/passwd",
    ] {
        let (s, _, body) = get(h.addr, evil);
        assert_ne!(s, 200, "{evil} served");
        assert!(!String::from_utf8_lossy(&body).contains("TOP-SECRET"), "{evil} leaked");
    }
    // A plain GET of /ws without an upgrade is a client error, not a crash.
    let (s, _, _) = get(h.addr, "/ws");
    assert!((400..500).contains(&s), "{s}");
}

#[test]
fn random_rooms_and_tokens_differ_and_bad_ones_are_refused() {
    let a = server(|_| {});
    let b = server(|_| {});
    assert_ne!(a.token, b.token);
    assert_ne!(a.room, b.room);
    assert_ne!(a.addr.port(), b.addr.port());
    let bad = serve::start(ServeConfig { port: 0, token: Some("short".into()), ..ServeConfig::default() });
    assert!(bad.is_err());
    let bad = serve::start(ServeConfig { port: 0, room: Some("a b".into()), ..ServeConfig::default() });
    assert!(bad.is_err());
    let taken = serve::start(ServeConfig { port: a.addr.port(), ..ServeConfig::default() });
    assert!(taken.unwrap_err().contains("binding"));
}
