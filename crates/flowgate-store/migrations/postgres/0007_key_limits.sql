-- Per-key limits beside the tenant's (NULL: the key adds no limit of that kind).
ALTER TABLE api_keys ADD COLUMN max_requests_per_minute BIGINT;
ALTER TABLE api_keys ADD COLUMN max_tokens_per_minute BIGINT;
ALTER TABLE api_keys ADD COLUMN max_concurrent_requests BIGINT;
