use serde_json::json;

use pve::{Error, Vmid};

use crate::fake::{self, Answer};

fn vmid() -> Vmid {
    Vmid::new(101).unwrap()
}

#[tokio::test]
async fn unauthorized_with_empty_body_uses_the_reason_phrase() {
    let fake = fake::serve(|_| Answer::error(401, "Authentication failed!", "")).await;
    let err = fake.client().version().await.unwrap_err();
    match &err {
        Error::Unauthorized { message, path, .. } => {
            assert_eq!(message, "Authentication failed!");
            assert_eq!(path, "/version");
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn forbidden_parses_path_and_privilege() {
    let fake = fake::serve(|_| {
        Answer::error(
            403,
            "Permission check failed (/vms/101, VM.PowerMgmt)",
            r#"{"data":null,"message":"Permission check failed (/vms/101, VM.PowerMgmt)\n"}"#,
        )
    })
    .await;
    let err = fake.client().start_lxc(vmid()).await.unwrap_err();
    match err {
        Error::Forbidden {
            acl_path,
            privilege,
            method,
            path,
            ..
        } => {
            assert_eq!(acl_path.as_deref(), Some("/vms/101"));
            assert_eq!(privilege.as_deref(), Some("VM.PowerMgmt"));
            assert_eq!(method, "POST");
            assert_eq!(path, "/nodes/pve1/lxc/101/status/start");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_request_keeps_per_parameter_errors() {
    let fake = fake::serve(|_| {
        Answer::error(
            400,
            "Parameter verification failed.",
            r#"{"data":null,"message":"Parameter verification failed.\n","errors":{"onboot":"type check ('boolean') failed - got 'true'"}}"#,
        )
    })
    .await;
    let err = fake
        .client()
        .update_lxc_config(vmid(), pve::ConfigUpdate::new().onboot(true))
        .await
        .unwrap_err();
    match err {
        Error::InvalidParameters { errors, .. } => {
            assert_eq!(
                errors["onboot"],
                "type check ('boolean') failed - got 'true'"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn locked_and_other_500() {
    let fake = fake::serve(|seen| {
        if seen.path.ends_with("/config") {
            Answer::error(
                500,
                "CT is locked (backup)",
                r#"{"data":null,"message":"CT is locked (backup)\n"}"#,
            )
        } else {
            Answer::error(
                500,
                "CT 101 already running",
                r#"{"data":null,"message":"CT 101 already running\n"}"#,
            )
        }
    })
    .await;
    let client = fake.client();
    let err = client
        .update_lxc_config(vmid(), pve::ConfigUpdate::new().cores(2))
        .await
        .unwrap_err();
    assert_eq!(err.lock(), Some("backup"));
    let err = client.start_lxc(vmid()).await.unwrap_err();
    assert!(
        matches!(err, Error::Api { status: 500, ref message, .. } if message == "CT 101 already running"),
        "{err:?}"
    );
}

#[tokio::test]
async fn not_implemented_and_proxy_errors() {
    let fake = fake::serve(|seen| {
        if seen.path.contains("/nodes/pve1/") {
            Answer::error(
                501,
                "Method 'GET /nodes/pve1/foo' not implemented",
                r#"{"data":null,"message":"Method 'GET /nodes/pve1/foo' not implemented"}"#,
            )
        } else {
            Answer::error(
                595,
                "Errors during connection establishment, proxy handshake: Connection refused",
                "",
            )
        }
    })
    .await;
    let client = fake.client();
    let err = client.node_status().await.unwrap_err();
    assert!(matches!(err, Error::NotImplemented { .. }), "{err:?}");
    let err = client.version().await.unwrap_err();
    match &err {
        Error::Proxy {
            status, message, ..
        } => {
            assert_eq!(*status, 595);
            assert!(message.starts_with("Errors during connection establishment"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn garbage_answers_are_decode_errors_naming_the_path() {
    let fake = fake::serve(|seen| match seen.path.as_str() {
        "/api2/json/version" => Answer {
            status: 200,
            reason: None,
            body: b"<html>captive portal</html>".to_vec(),
        },
        "/api2/json/cluster/resources" => Answer::data(json!({"not": "a list"})),
        _ => Answer::data(json!("definitely not a upid")),
    })
    .await;
    let client = fake.client();
    let err = client.version().await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref path, .. } if path == "/version"),
        "{err:?}"
    );
    assert!(err.to_string().contains("captive portal"));
    let err = client.cluster_resources(None).await.unwrap_err();
    assert!(
        matches!(err, Error::Decode { ref path, .. } if path == "/cluster/resources"),
        "{err:?}"
    );
    let err = client.start_lxc(vmid()).await.unwrap_err();
    assert!(err.to_string().contains("expected a UPID or null"), "{err}");
}
