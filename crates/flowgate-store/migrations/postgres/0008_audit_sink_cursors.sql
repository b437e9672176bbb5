-- Where each audit stream sink (NATS JetStream, Kafka) stands in each origin's log: the next
-- record index to publish and the size of the last published checkpoint. The store stays the
-- record of truth; a sink tails it from here after a restart.
CREATE TABLE audit_sink_cursors (
    origin TEXT NOT NULL,
    sink TEXT NOT NULL,
    next_index BIGINT NOT NULL,
    checkpoint_size BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (origin, sink)
);
