-- Strom catalog schema, version 1. Names and partitions use the "C" collation
-- so that ordering is bytewise, as in the embedded store.

CREATE TABLE databases (
    name       text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tables (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    database       text COLLATE "C" NOT NULL REFERENCES databases (name),
    name           text COLLATE "C" NOT NULL,
    schema_version integer NOT NULL,
    buckets        integer NOT NULL CHECK (buckets > 0),
    bucket_key     text[] NOT NULL,
    partition_key  text NOT NULL,
    properties     jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (database, name)
);

CREATE TABLE schema_versions (
    table_id   bigint NOT NULL REFERENCES tables (id) ON DELETE CASCADE,
    version    integer NOT NULL,
    schema     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_id, version)
);

CREATE TABLE buckets (
    table_id     bigint NOT NULL REFERENCES tables (id) ON DELETE CASCADE,
    partition    text COLLATE "C" NOT NULL,
    bucket       integer NOT NULL CHECK (bucket >= 0),
    leader       text NOT NULL DEFAULT '',
    epoch        bigint NOT NULL DEFAULT 0,
    lease_expiry timestamptz,
    next_offset  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (table_id, partition, bucket)
);

CREATE TABLE segments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_key   text NOT NULL UNIQUE,
    size         bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segment_ranges (
    table_id      bigint NOT NULL,
    partition     text COLLATE "C" NOT NULL,
    bucket        integer NOT NULL,
    base_offset   bigint NOT NULL,
    end_offset    bigint NOT NULL CHECK (end_offset > base_offset),
    segment_id    bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    epoch         bigint NOT NULL,
    byte_offset   bigint NOT NULL,
    byte_length   bigint NOT NULL,
    row_count     bigint NOT NULL,
    min_timestamp timestamptz NOT NULL,
    max_timestamp timestamptz NOT NULL,
    PRIMARY KEY (table_id, partition, bucket, base_offset),
    FOREIGN KEY (table_id, partition, bucket) REFERENCES buckets ON DELETE CASCADE
);
CREATE INDEX segment_ranges_end ON segment_ranges (table_id, partition, bucket, end_offset);
CREATE INDEX segment_ranges_segment ON segment_ranges (segment_id);

CREATE TABLE kv_snapshots (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id   bigint NOT NULL,
    partition  text COLLATE "C" NOT NULL,
    bucket     integer NOT NULL,
    epoch      bigint NOT NULL,
    log_offset bigint NOT NULL,
    files      text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (table_id, partition, bucket) REFERENCES buckets ON DELETE CASCADE
);
CREATE INDEX kv_snapshots_bucket ON kv_snapshots (table_id, partition, bucket, id);

CREATE TABLE tiered_offsets (
    table_id         bigint NOT NULL,
    partition        text COLLATE "C" NOT NULL,
    bucket           integer NOT NULL,
    "offset"         bigint NOT NULL,
    lake_snapshot_id bigint NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_id, partition, bucket),
    FOREIGN KEY (table_id, partition, bucket) REFERENCES buckets ON DELETE CASCADE
);

---- create above / drop below ----

DROP TABLE tiered_offsets;
DROP TABLE kv_snapshots;
DROP TABLE segment_ranges;
DROP TABLE segments;
DROP TABLE buckets;
DROP TABLE schema_versions;
DROP TABLE tables;
DROP TABLE databases;
