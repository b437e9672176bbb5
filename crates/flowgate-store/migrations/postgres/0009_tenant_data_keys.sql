-- Each tenant's data key for audit content kept in the log (`[audit] hash_prompts = false`),
-- sealed under the master key (an envelope; the store never sees it in clear). Deleting a
-- row erases every content encrypted under it: the log keeps the ciphertext, nobody can
-- open it.
CREATE TABLE tenant_data_keys (
    tenant_id TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
