-- 0012: module-scoped secrets (issue 14). The store never sees a value:
-- sealed is AES-256-GCM (nonce, then ciphertext and tag) made by
-- controller/secrets with the (module, name) pair as additional data, and
-- key_id names the key that sealed it so that the key can be rotated.
-- Secrets follow their module by id: a rename moves nothing, a delete of
-- the module deletes them.
CREATE TABLE secrets (
    module_id bigint NOT NULL REFERENCES modules (id) ON DELETE CASCADE,
    name      text COLLATE "C" NOT NULL,
    key_id    text COLLATE "C" NOT NULL,
    sealed    bytea NOT NULL,
    updated   timestamptz NOT NULL,
    PRIMARY KEY (module_id, name)
);
