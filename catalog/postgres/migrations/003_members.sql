-- Strom catalog schema, version 3: cluster membership (members). Every
-- running Strom process heartbeats its row; rows whose expiry passed are
-- never listed, and Heartbeat deletes those expired for over an hour.
-- Backward compatible: version-2 binaries never read the new table.
--
-- No index on expiry: the table holds a row per process (tens), expiry
-- changes on every heartbeat, and a sequential scan is cheapest.

CREATE TABLE members (
    id          text COLLATE "C" PRIMARY KEY,
    address     text NOT NULL DEFAULT '',
    api_address text NOT NULL DEFAULT '',
    roles       text[] NOT NULL DEFAULT '{}',
    started     timestamptz NOT NULL,
    expiry      timestamptz NOT NULL
);

---- create above / drop below ----

DROP TABLE members;
