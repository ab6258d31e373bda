-- 0015: several controllers on one Postgres (issue 15, controller/cluster).
--
-- leases: singleton work ("sinks", "events") is done by the one controller
-- whose lease row it is. A controller takes or renews a row with one
-- statement whose WHERE is "the owner is me, or the row has expired",
-- comparing with the database's now(), never a controller's clock. epoch
-- grows by one each time the row changes hands; acquired is when the
-- current owner took it. A release sets expires to now(), so the next
-- controller takes it at its next attempt.
CREATE TABLE leases (
    name     text COLLATE "C" PRIMARY KEY,
    owner    text COLLATE "C" NOT NULL,
    epoch    bigint NOT NULL,
    acquired timestamptz NOT NULL,
    expires  timestamptz NOT NULL
);

-- timer_claims: a cloud timer tick (timer key, scheduled time) is run by
-- the controller whose INSERT ... ON CONFLICT DO NOTHING made its row.
-- Every controller computes the same tick times (UTC, epoch-aligned).
-- Rows older than an hour are pruned by the controllers.
CREATE TABLE timer_claims (
    timer_key text COLLATE "C" NOT NULL,
    scheduled timestamptz NOT NULL,
    owner     text COLLATE "C" NOT NULL,
    PRIMARY KEY (timer_key, scheduled)
);
CREATE INDEX timer_claims_scheduled ON timer_claims (scheduled);

-- cluster_identity: the TLS identity every controller of the cluster
-- serves (QUIC for agents, who pin its key from their join tokens, and
-- the REST API's self-signed certificate, which the CLI pins). The first
-- controller to start stores it (INSERT ... ON CONFLICT DO NOTHING, then
-- every controller reads the row back). The certificate is public; the
-- private key is sealed with the controllers' secrets key (AES-256-GCM,
-- internal/sealbox), key_id naming the key. One row, name 'controller'.
CREATE TABLE cluster_identity (
    name        text COLLATE "C" PRIMARY KEY,
    cert_pem    bytea NOT NULL,
    key_id      text COLLATE "C" NOT NULL,
    sealed_key  bytea NOT NULL,
    created     timestamptz NOT NULL
);
