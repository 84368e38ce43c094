-- Strom catalog schema, version 2: retention (buckets.start_offset),
-- idempotent writers (writer_sequences), and indexes for timestamp lookups
-- and the janitor. Backward compatible: version-1 binaries never read the
-- new column or table, and the column has a default.

ALTER TABLE buckets ADD COLUMN start_offset bigint NOT NULL DEFAULT 0;

CREATE TABLE writer_sequences (
    table_id    bigint NOT NULL,
    partition   text COLLATE "C" NOT NULL,
    bucket      integer NOT NULL,
    writer_id   text COLLATE "C" NOT NULL,
    sequence    bigint NOT NULL,
    base_offset bigint NOT NULL,
    end_offset  bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_id, partition, bucket, writer_id),
    FOREIGN KEY (table_id, partition, bucket) REFERENCES buckets ON DELETE CASCADE
);

-- OffsetForTimestamp: ranges of a bucket by max_timestamp.
CREATE INDEX segment_ranges_max_ts ON segment_ranges (table_id, partition, bucket, max_timestamp) INCLUDE (base_offset);

-- UnknownObjects: is a key among any snapshot's files?
CREATE INDEX kv_snapshots_files ON kv_snapshots USING gin (files);

---- create above / drop below ----

DROP INDEX kv_snapshots_files;
DROP INDEX segment_ranges_max_ts;
DROP TABLE writer_sequences;
ALTER TABLE buckets DROP COLUMN start_offset;
