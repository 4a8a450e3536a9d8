//! Tokens that must not work.

use localapi::{TokenState, TokenStore};
use reqwest::{Method, StatusCode};

use crate::support::{vmid, Harness};

#[tokio::test]
async fn forged_truncated_and_garbage_tokens_get_the_same_401() {
    let h = Harness::start().await;
    let good = h.t101.expose().to_owned();
    let other = h.t102.expose().to_owned();
    let id = &good[4..20];
    let mut forged_secret = good.clone();
    forged_secret.replace_range(21.., &"ab".repeat(32));
    let candidates = vec![
        None,
        Some(String::new()),
        Some(good[..good.len() - 1].to_owned()),
        Some(good[..21].to_owned()),
        Some(format!("{good}0")),
        Some(good.to_uppercase()),
        Some(forged_secret),
        // 101's id with 102's secret.
        Some(format!("fla_{id}_{}", &other[21..])),
        Some(format!("fla_{}_{}", "0".repeat(16), &good[21..])),
        Some("garbage".to_owned()),
        Some("fla___".to_owned()),
        Some(format!("fla_{id}_{}", "é".repeat(32))),
    ];
    let mut bodies = Vec::new();
    for token in &candidates {
        let (status, body) = h
            .call(Method::GET, "/backup/status", token.as_deref(), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        bodies.push(body);
    }
    // Other schemes and no header at all.
    let resp = h
        .client
        .get(h.url("/backup/status"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // No hints: every refusal reads the same.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(bodies[0]["error"], "unauthorized");
    assert_eq!(bodies[0]["message"], "missing or invalid token");
    // Nothing reached a guest. The first refusal was audited in full without a token id, the
    // rest of this address's are counted into one summary when the interval (here: the server)
    // ends.
    assert!(h.guests.calls().is_empty(), "{:?}", h.guests.calls());
    let events = h.audit.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.outcome == "unauthorized" && e.token_id.is_none() && !e.mutation));
    let audit = h.audit.clone();
    h.stop().await;
    let summaries = audit.summaries();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].calls, candidates.len() as u64);
    assert_eq!(summaries[0].peer, Some([127, 0, 0, 1].into()));
    assert_eq!(
        summaries[0].by_outcome,
        vec![("unauthorized", candidates.len() as u64)]
    );
}

#[tokio::test]
async fn a_destroyed_guests_token_is_refused_and_revoked_for_good() {
    let h = Harness::start().await;
    let t = h.t103.expose().to_owned();
    let (status, _) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK);

    h.guests.destroy(vmid(103));
    let (status, body) = h
        .call(
            Method::POST,
            "/snapshot",
            Some(&t),
            Some(r#"{"name":"after"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let record = h.tokens.lookup(h.t103.id).unwrap().unwrap();
    assert_eq!(record.state, TokenState::Revoked);

    // A new guest reusing vmid 103 does not revive the old controller's token.
    h.guests.add(vmid(103), Default::default());
    let (status, _) = h.call(Method::GET, "/backup/status", Some(&t), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Other guests' tokens are untouched.
    let (status, _) = h
        .call(Method::GET, "/backup/status", Some(h.t101.expose()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.guests.calls().iter().all(|c| c.action != "snapshot"));
    h.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let h = Harness::start().await;
    let clock = localapi::SystemClock;
    assert!(localapi::revoke(h.tokens.as_ref(), &clock, h.t101.id).unwrap());
    let (status, _) = h
        .call(Method::GET, "/storage", Some(h.t101.expose()), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let detail = h.audit.events().last().unwrap().detail.clone().unwrap();
    assert!(detail.contains("revoked"), "{detail}");
    h.stop().await;
}
