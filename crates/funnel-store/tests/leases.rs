//! Leases on pipelines in the PostgreSQL store, and position commits fenced by them,
//! against the local server: a commit under a lease taken over by another instance is
//! refused, and leaves the new owner's position alone.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use funnel_store::{Fence, Lease, Leases, PostgresStore, Store, StoreError};

const CONNECTION: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

async fn store(name: &str) -> PostgresStore {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("leases_{name}_{}_{nanos}", std::process::id());
    PostgresStore::open(CONNECTION, &table).await.unwrap()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_is_claimed_once_renewed_by_its_owner_only_and_claimable_again_after_release() {
    let store = store("claim").await;
    let ttl = Duration::from_secs(30);
    let pipelines = names(&["a", "b", "c"]);
    let first = store.claim("one", &pipelines, 2, ttl).await.unwrap();
    assert_eq!(first.len(), 2, "at most `max` claimed: {first:?}");
    assert!(first.iter().all(|(_, epoch)| *epoch == 1), "{first:?}");
    let second = store.claim("two", &pipelines, 5, ttl).await.unwrap();
    assert_eq!(second.len(), 1, "only the unowned one is left: {second:?}");
    assert!(
        store
            .claim("two", &pipelines, 5, ttl)
            .await
            .unwrap()
            .is_empty(),
        "a held lease is never claimed"
    );
    // Renewing: only what the instance holds, under its epoch.
    let renewed = store.renew("one", &first, ttl).await.unwrap();
    assert_eq!(renewed.len(), 2);
    assert!(store.renew("two", &first, ttl).await.unwrap().is_empty());
    let (p, epoch) = &first[0];
    assert!(
        store
            .renew("one", &[(p.clone(), epoch + 1)], ttl)
            .await
            .unwrap()
            .is_empty()
    );
    // Released: the next claim takes it at once, under a new epoch.
    store.release("one", p, *epoch).await.unwrap();
    let again = store.claim("two", &pipelines, 5, ttl).await.unwrap();
    assert_eq!(again, [(p.clone(), epoch + 1)]);
    let leases = store.leases().await.unwrap();
    assert_eq!(leases.len(), 3);
    assert!(leases.contains(&Lease {
        pipeline: p.clone(),
        owner: Some("two".into()),
        epoch: epoch + 1
    }));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_claimed_by_another_instance_and_cannot_be_renewed_by_the_old_owner() {
    let store = store("expiry").await;
    let pipelines = names(&["p"]);
    let claimed = store
        .claim("old", &pipelines, 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(claimed, [("p".to_owned(), 1)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let taken = store
            .claim("new", &pipelines, 1, Duration::from_secs(30))
            .await
            .unwrap();
        if !taken.is_empty() || Instant::now() > deadline {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken, [("p".to_owned(), 2)]);
    assert!(
        store
            .renew("old", &claimed, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_under_a_lease_taken_over_is_refused_and_leaves_the_new_owners_position() {
    let store = store("fence").await;
    let pipelines = names(&["p"]);
    let ttl = Duration::from_millis(300);
    let [(_, old_epoch)] = store.claim("old", &pipelines, 1, ttl).await.unwrap()[..] else {
        panic!("p not claimed");
    };
    // Far in the future here: only the store can refuse it.
    let later = Instant::now() + Duration::from_secs(600);
    let old = Fence::new("p", "old", old_epoch, later);
    store
        .set_position_fenced("p", "src", &"1".into(), &old)
        .await
        .unwrap();
    // The lease expires and another instance claims it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_epoch = loop {
        if let Some((_, epoch)) = store
            .claim("new", &pipelines, 1, Duration::from_secs(30))
            .await
            .unwrap()
            .pop()
        {
            break epoch;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new = Fence::new("p", "new", new_epoch, later);
    store
        .set_position_fenced("p", "src", &"5".into(), &new)
        .await
        .unwrap();
    let err = store
        .set_position_fenced("p", "src", &"2".into(), &old)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { pipeline, epoch, .. } if pipeline == "p" && *epoch == old_epoch),
        "{err}"
    );
    assert_eq!(store.position("p", "src").await.unwrap(), Some("5".into()));
    // In one batch with the new owner's commits: only the stale one is refused.
    let (nine, three) = ("9".into(), "3".into());
    let (a, b) = tokio::join!(
        store.set_position_fenced("p", "other", &nine, &new),
        store.set_position_fenced("p", "src", &three, &old),
    );
    a.unwrap();
    assert!(matches!(b, Err(StoreError::Fenced { .. })));
    assert_eq!(store.position("p", "src").await.unwrap(), Some("5".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn live_instances_are_those_that_sent_a_heartbeat_within_their_lease_and_did_not_leave() {
    let store = store("instances").await;
    let ttl = Duration::from_secs(30);
    assert_eq!(store.heartbeat("b", ttl).await.unwrap(), names(&["b"]));
    assert_eq!(store.heartbeat("a", ttl).await.unwrap(), names(&["a", "b"]));
    store
        .heartbeat("gone", Duration::from_millis(1))
        .await
        .unwrap();
    store.leave("b").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = store.heartbeat("a", ttl).await.unwrap();
        if live == names(&["a"]) {
            break;
        }
        assert!(Instant::now() < deadline, "still live: {live:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
