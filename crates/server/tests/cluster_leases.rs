//! Partition leases and fenced saves on a real PostgreSQL (the store side
//! of `switchyard worker`): fair shares as workers come and go, epochs
//! that grow with each holder, and a save refused to a worker that lost
//! its lease, so it cannot overwrite the new holder's progress.

mod common;

use std::time::Duration;

use switchyard_store::{PartitionState, SqlStore};

async fn store() -> (SqlStore, String, String) {
    let (admin, name, url) = common::fresh_postgres_database().await;
    let s = SqlStore::open_postgres(&url).await.expect("open");
    (s, admin, name)
}

fn state(p: u32, seq: u64, tag: u8) -> PartitionState {
    PartitionState {
        partition: p,
        next_sequence: seq,
        state: vec![tag; 3],
        dedup: vec![tag],
    }
}

#[tokio::test]
async fn partitions_are_shared_fairly_between_the_live_workers() {
    let (s, admin, name) = store().await;
    let a = s.lease_round("a", 4, 60_000).await.unwrap();
    assert_eq!(
        a.held.iter().map(|h| h.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(
        a.held.iter().all(|h| h.1 == 1),
        "first holders have epoch 1"
    );
    assert_eq!(a.share, 4);
    // B joins: nothing is free, and both are told their share is 2.
    let b = s.lease_round("b", 4, 60_000).await.unwrap();
    assert!(b.held.is_empty());
    assert_eq!((b.share, b.live_workers), (2, 2));
    let a = s.lease_round("a", 4, 60_000).await.unwrap();
    assert_eq!((a.held.len(), a.share), (4, 2));
    // A hands back its two highest; B takes them with a new epoch.
    s.release_partition("a", 3, 1).await.unwrap();
    s.release_partition("a", 2, 1).await.unwrap();
    let b = s.lease_round("b", 4, 60_000).await.unwrap();
    assert_eq!(b.held, vec![(2, 2), (3, 2)]);
    let a = s.lease_round("a", 4, 60_000).await.unwrap();
    assert_eq!(a.held, vec![(0, 1), (1, 1)]);
    // A stops: B's next rounds count one worker and take A's partitions
    // once released.
    s.release_partition("a", 0, 1).await.unwrap();
    s.release_partition("a", 1, 1).await.unwrap();
    s.forget_worker("a").await.unwrap();
    let b = s.lease_round("b", 4, 60_000).await.unwrap();
    assert_eq!((b.held.len(), b.share, b.live_workers), (4, 4, 1));
    let leases = s.partition_leases().await.unwrap();
    assert!(leases.iter().all(|l| l.holder == "b" && l.live));
    drop(s);
    common::drop_postgres_database(&admin, &name).await;
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_save_over_the_new_holder() {
    let (s, admin, name) = store().await;
    let ttl = 300;
    let a = s.lease_round("a", 1, ttl).await.unwrap();
    assert_eq!(a.held, vec![(0, 1)]);
    assert!(s.save_partition("a", 1, &state(0, 10, 1)).await.unwrap());
    // A pauses past its lease; B takes the partition over and loads what
    // A saved.
    tokio::time::sleep(Duration::from_millis(ttl as u64 + 200)).await;
    let b = s.lease_round("b", 1, ttl * 100).await.unwrap();
    assert_eq!(b.held, vec![(0, 2)]);
    assert_eq!(s.load_partition(0).await.unwrap(), Some(state(0, 10, 1)));
    assert!(s.save_partition("b", 2, &state(0, 20, 2)).await.unwrap());
    // A wakes up and tries to save its older progress: refused.
    assert!(!s.save_partition("a", 1, &state(0, 15, 9)).await.unwrap());
    assert_eq!(s.load_partition(0).await.unwrap(), Some(state(0, 20, 2)));
    // A's next round no longer holds the partition.
    let a = s.lease_round("a", 1, ttl).await.unwrap();
    assert!(a.held.is_empty());
    let v = s.partition_versions().await.unwrap();
    assert_eq!((v.len(), v[0].next_sequence, v[0].epoch), (1, 20, 2));
    drop(s);
    common::drop_postgres_database(&admin, &name).await;
}

#[tokio::test]
async fn sqlite_refuses_cluster_calls_with_a_clear_error() {
    let s = SqlStore::open_sqlite("sqlite::memory:").await.unwrap();
    let e = s.lease_round("a", 1, 1000).await.unwrap_err();
    assert!(e.to_string().contains("PostgreSQL"), "{e}");
}

#[tokio::test]
async fn a_worker_that_let_its_lease_expire_takes_it_back_under_a_new_epoch() {
    let (s, admin, name) = store().await;
    let ttl = 300;
    assert_eq!(s.lease_round("a", 1, ttl).await.unwrap().held, vec![(0, 1)]);
    tokio::time::sleep(Duration::from_millis(ttl as u64 + 200)).await;
    // Whatever A still runs under epoch 1 can no longer save.
    assert_eq!(s.lease_round("a", 1, ttl).await.unwrap().held, vec![(0, 2)]);
    assert!(!s.save_partition("a", 1, &state(0, 5, 1)).await.unwrap());
    assert!(s.save_partition("a", 2, &state(0, 5, 2)).await.unwrap());
    drop(s);
    common::drop_postgres_database(&admin, &name).await;
}
