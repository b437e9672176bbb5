-- Webhook payloads and operators look records up by request id (GET /v1/audit?request_id=).
CREATE INDEX audit_entries_request ON audit_entries(origin, request_id);
