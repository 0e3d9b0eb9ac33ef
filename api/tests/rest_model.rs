//! The loop ↔ API channels, and bad input never answered with a 5xx.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rest_support;

use axum::http::Method;
use ems_api::model::{command_channel, view_channel, ApiCommand, LinkError, Refusal};
use ems_core::{State, TransitionRequest};
use proptest::prelude::*;
use rest_support::*;
use std::time::Duration;

#[tokio::test]
async fn commands_are_drained_without_blocking_and_answered() {
    let (client, mut inbox) = command_channel(1, Duration::from_millis(200));
    assert!(inbox.try_next().is_none());
    let c2 = client.clone();
    let waiter = tokio::spawn(async move {
        c2.send(ApiCommand::Request { actor: "a".into(), request: TransitionRequest::Start }).await
    });
    let pending = loop {
        if let Some(p) = inbox.try_next() {
            break p;
        }
        tokio::task::yield_now().await;
    };
    assert!(matches!(pending.command(), ApiCommand::Request { request: TransitionRequest::Start, .. }));
    pending.answer(Err(Refusal { state: State::Error, reason: "fault".into() }));
    assert_eq!(waiter.await.unwrap(), Ok(Err(Refusal { state: State::Error, reason: "fault".into() })));
    // Nobody answers: timeout; queue full: busy; loop gone: closed.
    let first = tokio::spawn({
        let c = client.clone();
        async move { c.send(ApiCommand::EmergencyStop { actor: "a".into() }).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(client.send(ApiCommand::EmergencyStop { actor: "b".into() }).await, Err(LinkError::Busy));
    assert_eq!(first.await.unwrap(), Err(LinkError::Timeout));
    drop(inbox);
    assert_eq!(client.send(ApiCommand::EmergencyStop { actor: "c".into() }).await, Err(LinkError::Closed));
    let (tx, rx) = view_channel();
    assert!(rx.borrow().at.is_none());
    tx.send_replace(ems_api::model::SiteView { at: Some(t0()), ..Default::default() });
    assert_eq!(rx.borrow().at, Some(t0()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_cause_5xx(body in proptest::collection::vec(any::<u8>(), 0..200),
                                        json_ish in "[{}\\[\\]\":,a-zA-Z0-9 .eE+-]{0,80}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let h = harness();
            for path in ["/api/v1/state", "/api/v1/reset", "/api/v1/control-modes", "/api/v1/schedules", "/api/v1/graphql"] {
                for b in [body.clone(), json_ish.clone().into_bytes()] {
                    let r = h.raw(Method::POST, path, Some(ADMIN), b).await;
                    prop_assert!(!r.status.is_server_error(), "{} {}", path, r.status);
                }
            }
            Ok(())
        })?;
    }
}
