CREATE TABLE audit_nodes (
    origin TEXT PRIMARY KEY,
    signing_key TEXT NOT NULL,
    state TEXT,
    anchor TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE audit_entries (
    origin TEXT NOT NULL,
    idx BIGINT NOT NULL,
    record TEXT NOT NULL,
    leaf_hash TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    model TEXT NOT NULL,
    status BIGINT,
    PRIMARY KEY (origin, idx)
);
CREATE INDEX audit_entries_time ON audit_entries(origin, time_ms);
CREATE INDEX audit_entries_tenant ON audit_entries(origin, tenant_id, idx);
CREATE TABLE audit_findings (
    origin TEXT NOT NULL,
    idx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    rule_id TEXT NOT NULL,
    action TEXT NOT NULL,
    hits BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (origin, idx, position)
);
CREATE INDEX audit_findings_rule ON audit_findings(origin, rule_id, idx);
CREATE TABLE audit_checkpoints (
    origin TEXT NOT NULL,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (origin, size)
);
CREATE TABLE audit_subtrees (
    origin TEXT NOT NULL,
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (origin, level, idx)
);
CREATE TABLE audit_pruned_leaves (
    origin TEXT NOT NULL,
    idx BIGINT NOT NULL,
    leaf_hash TEXT NOT NULL,
    PRIMARY KEY (origin, idx)
);
