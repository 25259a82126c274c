//! Scale-out bookkeeping on PostgreSQL (migration `0008_cluster.sql`):
//! worker heartbeats, partition leases and each partition's saved
//! aggregator state. `switchyard worker` writes it; serve nodes read the
//! partition states for results.
//!
//! Leases: one round ([`SqlStore::lease_round`]) runs in a transaction that
//! locks every lease row, so rounds of different workers never interleave.
//! A worker keeps what it holds (renewed while unexpired), and takes free
//! or expired partitions (its own expired ones too, under a new epoch) up
//! to its fair share, `ceil(partitions / live workers)`; one
//! holding more than its share is told so and hands the extra back
//! ([`SqlStore::release_partition`]) after saving it. Taking a partition
//! raises its epoch.
//!
//! Saving ([`SqlStore::save_partition`]) is fenced: in one transaction the
//! lease row is locked and must still name this worker and epoch, then the
//! state and the sequence it covers are written. A worker that lost its
//! lease (paused past the expiry, partitioned from the database) cannot
//! overwrite the new holder's progress, and the new holder, whose lease
//! round waited on that lock, loads what was saved.
//!
//! These tables exist on PostgreSQL only; on SQLite every method answers
//! `StoreError::Invalid`.

use sqlx::Row;

use super::{Backend, SqlStore};
use crate::error::{Result, StoreError};

/// What a lease round gave a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRound {
    /// Partitions this worker holds now, with the epoch of each lease.
    pub held: Vec<(u32, u64)>,
    /// Its fair share: it should hand back partitions beyond this many.
    pub share: usize,
    /// Workers seen within the lease time, this one included.
    pub live_workers: usize,
}

/// A partition's saved aggregator state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: u32,
    /// Every message of the partition before this stream sequence is in
    /// `state`.
    pub next_sequence: u64,
    /// The aggregator checkpoint (`switchyard_aggregate::checkpoint`).
    pub state: Vec<u8>,
    /// The partition's recent event ids (deduplication window).
    pub dedup: Vec<u8>,
}

/// Which version of a partition's state is saved, without the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionVersion {
    pub partition: u32,
    pub next_sequence: u64,
    pub epoch: u64,
    /// Milliseconds since the epoch of the last save.
    pub updated_ms: i64,
}

/// A lease as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLease {
    pub partition: u32,
    /// The worker's id; empty when free.
    pub holder: String,
    pub epoch: u64,
    /// Whether the lease has not expired.
    pub live: bool,
}

fn postgres_only(store: &SqlStore) -> Result<()> {
    match store.backend {
        Backend::Postgres => Ok(()),
        Backend::Sqlite => Err(StoreError::Invalid(
            "scale-out (workers and partitions) needs PostgreSQL".into(),
        )),
    }
}

impl SqlStore {
    /// One lease round for `worker` over `partitions` partitions with
    /// leases of `ttl_ms` (see the module doc).
    pub async fn lease_round(
        &self,
        worker: &str,
        partitions: u32,
        ttl_ms: i64,
    ) -> Result<LeaseRound> {
        postgres_only(self)?;
        // Workers gone for long are forgotten (they hold nothing by then);
        // outside the round's transaction, so two rounds never deadlock
        // on these rows.
        sqlx::query(
            "DELETE FROM cluster_workers WHERE seen_at < now() - ($1::bigint * interval '1 millisecond')",
        )
        .bind(ttl_ms.saturating_mul(20))
        .execute(&self.pool)
        .await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO cluster_workers (id, seen_at) VALUES ($1, now()) \
             ON CONFLICT (id) DO UPDATE SET seen_at = now()",
        )
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cluster_workers WHERE seen_at > now() - ($1::bigint * interval '1 millisecond')",
        )
        .bind(ttl_ms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO cluster_leases (part, holder, epoch, expires_at) \
             SELECT p, '', 0, now() FROM generate_series(0, $1::integer - 1) AS p \
             ON CONFLICT (part) DO NOTHING",
        )
        .bind(i64::from(partitions))
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT part, holder, epoch, (expires_at > now()) AS live FROM cluster_leases \
             WHERE part < $1 ORDER BY part FOR UPDATE",
        )
        .bind(i64::from(partitions))
        .fetch_all(&mut *tx)
        .await?;
        let live = (live.max(1)) as usize;
        let share = (partitions as usize).div_ceil(live);
        let mut held = Vec::new();
        let mut free = Vec::new();
        for r in &rows {
            let part: i32 = r.try_get("part")?;
            let holder: String = r.try_get("holder")?;
            let epoch: i64 = r.try_get("epoch")?;
            let is_live: bool = r.try_get("live")?;
            if holder == worker && is_live {
                held.push((part as u32, epoch as u64));
            } else if !is_live || holder.is_empty() {
                // An expired lease is taken with a new epoch even by the
                // worker that held it: whatever it still runs under the
                // old epoch can no longer save.
                free.push((part as u32, epoch as u64));
            }
        }
        for (part, _) in &held {
            sqlx::query(
                "UPDATE cluster_leases SET expires_at = now() + ($1::bigint * interval '1 millisecond') WHERE part = $2",
            )
            .bind(ttl_ms)
            .bind(i64::from(*part))
            .execute(&mut *tx)
            .await?;
        }
        for (part, epoch) in free {
            if held.len() >= share {
                break;
            }
            let epoch = epoch + 1;
            sqlx::query(
                "UPDATE cluster_leases SET holder = $1, epoch = $2, \
                 expires_at = now() + ($3::bigint * interval '1 millisecond') WHERE part = $4",
            )
            .bind(worker)
            .bind(epoch as i64)
            .bind(ttl_ms)
            .bind(i64::from(part))
            .execute(&mut *tx)
            .await?;
            held.push((part, epoch));
        }
        tx.commit().await?;
        held.sort_unstable();
        Ok(LeaseRound {
            held,
            share,
            live_workers: live,
        })
    }

    /// Hands a partition back (after its last save), so another worker
    /// can take it at its next round. Does nothing if the lease is no
    /// longer this worker's at this epoch.
    pub async fn release_partition(&self, worker: &str, partition: u32, epoch: u64) -> Result<()> {
        postgres_only(self)?;
        sqlx::query(
            "UPDATE cluster_leases SET holder = '', expires_at = now() \
             WHERE part = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(i64::from(partition))
        .bind(worker)
        .bind(epoch as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a worker out of the fair-share count (when it stops).
    pub async fn forget_worker(&self, worker: &str) -> Result<()> {
        postgres_only(self)?;
        sqlx::query("DELETE FROM cluster_workers WHERE id = $1")
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Saves a partition's state if `worker` still holds it at `epoch`;
    /// `Ok(false)` (nothing written) when it does not.
    pub async fn save_partition(
        &self,
        worker: &str,
        epoch: u64,
        state: &PartitionState,
    ) -> Result<bool> {
        postgres_only(self)?;
        let mut tx = self.pool.begin().await?;
        let holds: Option<i64> = sqlx::query_scalar(
            "SELECT epoch FROM cluster_leases WHERE part = $1 AND holder = $2 AND epoch = $3 FOR UPDATE",
        )
        .bind(i64::from(state.partition))
        .bind(worker)
        .bind(epoch as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if holds.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO cluster_partitions (part, next_sequence, state, dedup, epoch, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now()) \
             ON CONFLICT (part) DO UPDATE SET next_sequence = excluded.next_sequence, \
             state = excluded.state, dedup = excluded.dedup, epoch = excluded.epoch, \
             updated_at = excluded.updated_at",
        )
        .bind(i64::from(state.partition))
        .bind(state.next_sequence as i64)
        .bind(&state.state)
        .bind(&state.dedup)
        .bind(epoch as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A partition's saved state, if any.
    pub async fn load_partition(&self, partition: u32) -> Result<Option<PartitionState>> {
        postgres_only(self)?;
        let row = sqlx::query(
            "SELECT next_sequence, state, dedup FROM cluster_partitions WHERE part = $1",
        )
        .bind(i64::from(partition))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let next: i64 = r.try_get("next_sequence")?;
            Ok(PartitionState {
                partition,
                next_sequence: next as u64,
                state: r.try_get("state")?,
                dedup: r.try_get("dedup")?,
            })
        })
        .transpose()
    }

    /// The saved version of every partition's state.
    pub async fn partition_versions(&self) -> Result<Vec<PartitionVersion>> {
        postgres_only(self)?;
        let rows = sqlx::query(
            "SELECT part, next_sequence, epoch, \
             (extract(epoch from updated_at) * 1000)::bigint AS updated_ms \
             FROM cluster_partitions ORDER BY part",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let part: i32 = r.try_get("part")?;
                let next: i64 = r.try_get("next_sequence")?;
                let epoch: i64 = r.try_get("epoch")?;
                Ok(PartitionVersion {
                    partition: part as u32,
                    next_sequence: next as u64,
                    epoch: epoch as u64,
                    updated_ms: r.try_get("updated_ms")?,
                })
            })
            .collect()
    }

    /// Every lease, for status pages and tests.
    pub async fn partition_leases(&self) -> Result<Vec<PartitionLease>> {
        postgres_only(self)?;
        let rows = sqlx::query(
            "SELECT part, holder, epoch, (expires_at > now()) AS live FROM cluster_leases ORDER BY part",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let part: i32 = r.try_get("part")?;
                let epoch: i64 = r.try_get("epoch")?;
                Ok(PartitionLease {
                    partition: part as u32,
                    holder: r.try_get("holder")?,
                    epoch: epoch as u64,
                    live: r.try_get("live")?,
                })
            })
            .collect()
    }
}
