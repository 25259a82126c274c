-- Scale-out: the workers that aggregate the partitions of the event stream
-- (NATS JetStream), their leases, and each partition's aggregator state
-- with the stream sequence it covers. Written only by `switchyard worker`;
-- read by serve nodes for results.

-- Workers alive recently (a heartbeat per lease round).
CREATE TABLE cluster_workers (
    id      TEXT PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL
);

-- Which worker aggregates which partition, until when. `epoch` grows with
-- every change of holder: a state is saved only under the epoch it was
-- leased with (a fence against a worker that lost its lease).
CREATE TABLE cluster_leases (
    part       INTEGER PRIMARY KEY,
    holder     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- A partition's aggregator checkpoint and recent event ids, covering
-- every message of the partition before `next_sequence`.
CREATE TABLE cluster_partitions (
    part          INTEGER PRIMARY KEY,
    next_sequence BIGINT NOT NULL,
    state         BYTEA NOT NULL,
    dedup         BYTEA NOT NULL,
    epoch         BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- The states are written whole every second or so and are mostly
-- incompressible numbers: stored out of line without compression, a save
-- costs PostgreSQL a copy instead of a compression pass.
ALTER TABLE cluster_partitions ALTER COLUMN state SET STORAGE EXTERNAL;
ALTER TABLE cluster_partitions ALTER COLUMN dedup SET STORAGE EXTERNAL;
