-- 0002: edge agents and the join tokens that let them join.

-- A join token's plain secret is shown once; only its sha256 is kept.
-- expires NULL means the token never expires. Expiry is checked by the store
-- against the controller's clock, not the database's.
CREATE TABLE join_tokens (
    id          text COLLATE "C" PRIMARY KEY,
    secret_hash bytea NOT NULL UNIQUE,
    created     timestamptz NOT NULL,
    expires     timestamptz
);

-- An agent's id is chosen by the controller at join; its name is for humans
-- and need not be unique. Labels are "key=value", in the order last reported.
CREATE TABLE agents (
    id              text COLLATE "C" PRIMARY KEY,
    name            text COLLATE "C" NOT NULL,
    credential_hash bytea NOT NULL UNIQUE,
    labels          text[] COLLATE "C" NOT NULL DEFAULT '{}',
    created         timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL
);

-- ListAgents sorts by name then id.
CREATE INDEX agents_name_id ON agents (name, id);
