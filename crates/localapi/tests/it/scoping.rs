//! A token reaches its own guest and nothing else.

use reqwest::{Method, StatusCode};

use crate::support::{snap, vmid, Harness};

#[tokio::test]
async fn another_guests_token_only_ever_touches_its_own_guest() {
    let h = Harness::start().await;
    h.give_backup_policy(101);
    h.give_backup_policy(102);
    let t = h.t102.expose().to_owned();
    let (status, body) = h.call(Method::GET, "/storage", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["mounts"].as_array().unwrap().len(), 2, "{body}");
    let (status, _) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"pre-deploy"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // 101's snapshot is not 102's: not found, and nothing rolled back.
    let (status, body) = h
        .call(
            Method::POST,
            "/rollback",
            Some(&t),
            Some(r#"{"name":"base101"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, _) = h.call(Method::POST, "/backup", Some(&t), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for path in ["/backup/due", "/backup/status", "/restore-test/status"] {
        let (status, _) = h.call(Method::GET, path, Some(&t), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    h.guests.idle().await;

    let calls = h.guests.calls();
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|c| c.vmid == vmid(102)), "{calls:?}");
    assert!(calls.iter().all(|c| c.action != "rollback"));
    assert!(h.guests.executions().iter().all(|e| e.vmid == vmid(102)));
    assert_eq!(
        h.guests.guest(vmid(101)).unwrap().snapshots,
        vec![snap("base101")]
    );
    assert!(h.audit.events().iter().all(|e| e.vmid == Some(vmid(102))));
    h.stop().await;
}

#[tokio::test]
async fn a_guest_id_in_the_query_is_refused_and_audited() {
    let h = Harness::start().await;
    let t = h.t102.expose().to_owned();
    for (method, path, body, guest_like) in [
        (Method::GET, "/storage?vmid=101", None, true),
        (Method::GET, "/backup/status?guest=101", None, true),
        (Method::GET, "/backup/due?node=pve&id=101", None, true),
        (
            Method::POST,
            "/snapshot?vmid=101",
            Some(r#"{"name":"sneaky"}"#),
            true,
        ),
        (Method::POST, "/backup?101", None, true),
        (Method::GET, "/restore-test/status?verbose=1", None, false),
    ] {
        let (status, reply) = h.call(method, path, Some(&t), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply["error"], "unexpected_parameter", "{path}");
        let ev = h.audit.events().last().cloned().unwrap();
        assert_eq!(ev.outcome, "unexpected_parameter");
        assert_eq!(ev.token_id, Some(h.t102.id));
        assert_eq!(ev.guest_id_attempt, guest_like, "{path}");
    }
    // Refused before any handler ran: no guest was asked anything.
    assert!(h.guests.calls().is_empty(), "{:?}", h.guests.calls());
    h.stop().await;
}

#[tokio::test]
async fn a_guest_id_in_the_body_is_refused_and_audited() {
    let h = Harness::start().await;
    let t = h.t102.expose().to_owned();
    for (method, path, body) in [
        (Method::POST, "/snapshot", r#"{"name":"sneaky","vmid":101}"#),
        (
            Method::POST,
            "/rollback",
            r#"{"name":"base102","guest":"101"}"#,
        ),
        (Method::POST, "/backup", r#"{"vmid":101}"#),
        (Method::POST, "/backup", r#"{"target":"other-storage"}"#),
        (Method::GET, "/backup/status", r#"{"vmid":101}"#),
        (Method::GET, "/storage", r#"{"node":"pve"}"#),
    ] {
        let (status, reply) = h.call(method, path, Some(&t), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(reply["error"], "unexpected_parameter", "{path} {body}");
        let ev = h.audit.events().last().cloned().unwrap();
        assert!(ev.guest_id_attempt, "{path} {body}");
        assert_eq!(ev.vmid, Some(vmid(102)));
    }
    assert!(h.guests.calls().is_empty(), "{:?}", h.guests.calls());
    h.stop().await;
}

#[tokio::test]
async fn snapshot_name_tricks_are_refused() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    let names = [
        "../x",
        "a/b",
        "..",
        "%2e%2e",
        "%2e%2e%2fx",
        "a\\b",
        "base101/../base102",
        "ѕnap",
        "snap\u{200b}",
        "snap\u{0}",
        "snap name",
        "1snap",
        "-snap",
        "current",
        "vzdump",
        "x",
        &"a".repeat(41),
    ];
    for route in ["/snapshot", "/rollback"] {
        for name in names {
            let body = serde_json::json!({ "name": name }).to_string();
            let (status, reply) = h.call(Method::POST, route, Some(&t), Some(&body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {name:?}");
            assert_eq!(reply["error"], "bad_request");
        }
    }
    for body in [
        "",
        "{}",
        r#"{"name":5}"#,
        r#"["base101"]"#,
        "not json",
        r#"{"name":null}"#,
    ] {
        let (status, _) = h
            .call(Method::POST, "/rollback", Some(&t), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
    }
    assert!(h.guests.calls().is_empty(), "{:?}", h.guests.calls());
    h.stop().await;
}

#[tokio::test]
async fn other_paths_are_not_routes() {
    let h = Harness::start().await;
    let t = h.t101.expose().to_owned();
    for path in [
        "/",
        "/storage/",
        "/Storage",
        "/vm/102/storage",
        "/backup/status/102",
        "/snapshot/102",
    ] {
        let (status, body) = h.call(Method::GET, path, Some(&t), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "not_found");
    }
    let (status, body) = h.call(Method::DELETE, "/snapshot", Some(&t), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed");
    assert!(h.guests.calls().is_empty());
    assert!(h.audit.events().iter().all(|e| e.route == "other"));
    h.stop().await;
}
