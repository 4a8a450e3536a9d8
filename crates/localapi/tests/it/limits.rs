//! Oversized and slow requests, and a flood.

use std::time::{Duration, Instant};

use localapi::{Limits, RateLimit};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncWriteExt;

use crate::support::{raw_tls, read_until_close, test_limits, vmid, Harness};

#[tokio::test]
async fn an_oversized_body_is_413() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    let big = format!(r#"{{"name":"snap1","pad":"{}"}}"#, "x".repeat(5000));
    let (status, body) = h
        .call(Method::POST, "/snapshot", Some(&t), Some(&big))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "payload_too_large");

    // Chunked, so no Content-Length announces it: cut off while reading.
    let mut s = raw_tls(&h).await;
    let chunk = "y".repeat(1000);
    let mut req = format!(
        "POST /snapshot HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    for _ in 0..6 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (resp, _) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(h.guests.calls().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_off() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    let mut s = raw_tls(&h).await;
    let body = r#"{"name":"slowsnap"}"#;
    let head = format!(
        "POST /snapshot HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {t}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the whole body would take ~4 s, the limit is 0.8 s.
    let writer = async {
        for b in body.bytes() {
            if s.write_all(&[b]).await.is_err() {
                break;
            }
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_millis(1500) {
                break;
            }
        }
    };
    writer.await;
    let (resp, closed) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(
        resp.starts_with("HTTP/1.1 408"),
        "expected 408, got {resp:?}"
    );
    assert!(closed, "connection left open after the cut-off");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(h.guests.calls().is_empty(), "a slow body reached the guest");
    let ev = h.audit.events().last().cloned().unwrap();
    assert_eq!((ev.status, ev.outcome), (408, "timeout"));
    h.stop().await;
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let h = Harness::start().await;
    let mut s = raw_tls(&h).await;
    let started = Instant::now();
    // 20 bytes at 100 ms each: 2 s of headers that never end; the header timeout is 0.8 s.
    for b in "GET /backup/status H".bytes() {
        if s.write_all(&[b]).await.is_err() || s.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rest, closed) = read_until_close(&mut s, Duration::from_secs(2)).await;
    assert!(
        closed,
        "server kept a slowloris connection open for {:?}",
        started.elapsed()
    );
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest:?}"
    );
    // The header never completed, so no request reached the gate.
    assert!(h.audit.events().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn an_idle_connection_without_a_request_is_closed() {
    let h = Harness::start().await;
    let mut s = raw_tls(&h).await;
    let (_, closed) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(closed, "idle connection kept open");
    h.stop().await;
}

#[tokio::test]
async fn a_flood_on_one_token_is_limited_and_other_guests_are_unaffected() {
    let limits = Limits {
        per_token: RateLimit {
            per_second: 5.0,
            burst: 10,
        },
        ..test_limits()
    };
    let h = Harness::with_limits(limits).await;
    let flood = h.t101.expose().to_owned();
    let calm = h.t102.expose().to_owned();
    let flood_reqs = (0..60).map(|_| h.call(Method::GET, "/backup/status", Some(&flood), None));
    let calm_reqs = (0..8).map(|_| h.call(Method::GET, "/backup/status", Some(&calm), None));
    let (flooded, calmed) = tokio::join!(
        futures_join_all(flood_reqs.collect()),
        futures_join_all(calm_reqs.collect())
    );
    let limited = flooded
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let ok = flooded.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    // Burst 10 plus the refill while the 60 arrive (5/s); generous for a loaded machine.
    assert!(limited >= 30, "only {limited} of 60 limited");
    assert!((10..=30).contains(&ok), "{ok} passed");
    assert!(flooded
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .all(|(_, b)| b["error"] == "rate_limited"));
    assert!(
        calmed.iter().all(|(s, _)| *s == StatusCode::OK),
        "{calmed:?}"
    );
    // A limited call never reached the guest.
    let reads_101 = h
        .guests
        .calls()
        .iter()
        .filter(|c| c.vmid == vmid(101))
        .count();
    assert_eq!(reads_101, ok);

    // Retry-After is given.
    let resp = h
        .client
        .get(h.url("/backup/status"))
        .header("authorization", format!("Bearer {flood}"))
        .send()
        .await
        .unwrap();
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(resp.headers().contains_key("retry-after"));
    }
    h.stop().await;
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_address() {
    let h = Harness::start().await;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let (s, _) = h.call(Method::GET, "/storage", Some("nope"), None).await;
        statuses.push(s);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Valid tokens from the same address are charged to their own buckets, not the address.
    let (s, _) = h
        .call(Method::GET, "/storage", Some(h.t101.expose()), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    h.stop().await;
}

/// Runs futures concurrently on this task (no futures crate needed).
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let h = Harness::start().await;
    let mut s = raw_tls(&h).await;
    let req = format!(
        "GET /backup/status HTTP/1.1\r\nhost: localhost\r\nx-pad: {}\r\n\r\n",
        "p".repeat(10_000)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let (resp, closed) = read_until_close(&mut s, Duration::from_secs(3)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:?}");
    assert!(closed);
    assert!(h.audit.events().is_empty());
    h.stop().await;
}

/// Issue 11 item 6: a flood without a token is one full audit entry and, when the interval
/// ends, one summary for the address; an authenticated caller's calls, mutations included,
/// keep an entry each.
#[tokio::test]
async fn a_flood_without_a_token_is_one_entry_and_one_summary() {
    let h = Harness::start().await;
    h.give_backup_policy(101);
    // 100 at once: under the test harness's per-address connection cap.
    let flood = (0..100).map(|_| h.call(Method::GET, "/backup/status", None, None));
    let answers = futures_join_all(flood.collect()).await;
    let limited = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited > 0, "the address limit never applied");
    let t = h.t101.expose().to_owned();
    let (snap, _) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"s1"}"#),
        )
        .await;
    assert_eq!(snap, StatusCode::CREATED);
    let (read, _) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(read, StatusCode::OK);

    let events = h.audit.events();
    let refused: Vec<_> = events.iter().filter(|e| e.token_id.is_none()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let mine: Vec<_> = events.iter().filter(|e| e.token_id.is_some()).collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine[0].mutation && mine[0].route == "POST /snapshot");
    assert!(!mine[1].mutation);

    let audit = h.audit.clone();
    h.stop().await;
    let summaries = audit.summaries();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].calls, 99);
    let by: std::collections::BTreeMap<_, _> = summaries[0].by_outcome.iter().cloned().collect();
    assert_eq!(
        by.get("rate_limited").copied().unwrap_or(0) as usize,
        limited
    );
    assert_eq!(
        by.values().sum::<u64>(),
        99,
        "{:?}",
        summaries[0].by_outcome
    );
}

/// Opens `n` TCP connections from `local` that never start a TLS handshake, and says how many
/// the server closed within `wait`.
async fn idle_connections(
    h: &Harness,
    local: [u8; 4],
    n: usize,
    wait: Duration,
) -> (Vec<tokio::net::TcpStream>, usize) {
    use tokio::io::AsyncReadExt;
    let mut open = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((local, 0))).unwrap();
        open.push(socket.connect(h.addr).await.unwrap());
    }
    tokio::time::sleep(wait).await;
    let mut kept = Vec::new();
    let mut closed = 0;
    for mut s in open {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(5), s.read(&mut byte)).await {
            // Still open, waiting for a ClientHello.
            Err(_) => kept.push(s),
            Ok(_) => closed += 1,
        }
    }
    (kept, closed)
}

/// Issue 11 item 7: 300 idle connections from one guest once took every shared slot; now the
/// address holds its share and another guest's controller is served during the flood.
#[tokio::test]
async fn idle_connections_from_one_guest_do_not_lock_out_another() {
    let limits = Limits {
        max_connections_per_peer: 32,
        ..test_limits()
    };
    let h = Harness::with_limits(limits).await;
    let (kept, closed) =
        idle_connections(&h, [127, 0, 0, 1], 300, Duration::from_millis(300)).await;
    assert_eq!(kept.len(), 32, "{closed} closed");
    assert_eq!(closed, 268);
    let other = h.client_from([127, 0, 0, 2]);
    for _ in 0..5 {
        let resp = other
            .get(h.url("/backup/status"))
            .header("authorization", format!("Bearer {}", h.t102.expose()))
            .send()
            .await
            .expect("the second guest was locked out");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    drop(kept);
    h.stop().await;
}

/// Issue 11 item 7: when the listener is full of connections that never finished their
/// handshake (from many addresses, each under its cap), a new guest's connection takes the
/// slot of one of them instead of being closed.
#[tokio::test]
async fn a_full_listener_evicts_handshakes_for_a_new_guest() {
    let limits = Limits {
        max_connections: 64,
        max_connections_per_peer: 16,
        ..test_limits()
    };
    let h = Harness::with_limits(limits).await;
    let mut held = Vec::new();
    for last in 10..14 {
        let (kept, closed) =
            idle_connections(&h, [127, 0, 0, last], 16, Duration::from_millis(50)).await;
        assert_eq!((kept.len(), closed), (16, 0));
        held.extend(kept);
    }
    let other = h.client_from([127, 0, 0, 2]);
    for _ in 0..3 {
        let resp = other
            .get(h.url("/backup/status"))
            .header("authorization", format!("Bearer {}", h.t102.expose()))
            .send()
            .await
            .expect("a full listener closed the new guest's connection");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Exactly one idle connection made room (reqwest reused its connection).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut evicted = 0;
    for mut s in held {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(5), s.read(&mut byte))
            .await
            .is_ok()
        {
            evicted += 1;
        }
    }
    assert_eq!(evicted, 1);
    h.stop().await;
}
