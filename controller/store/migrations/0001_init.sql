-- 0001: the first schema. Names sort by bytes (COLLATE "C") so that Postgres
-- and the embedded store list in the same order whatever the database locale.

CREATE TABLE modules (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE
);

-- The default module always exists; the store refuses to delete or rename it.
INSERT INTO modules (name) VALUES ('_');

-- Wasm bytes, stored once per digest ("sha256:<hex>"). A row no function
-- refers to is deleted by the transaction that dropped its last reference.
CREATE TABLE code (
    digest text COLLATE "C" PRIMARY KEY,
    bytes  bytea NOT NULL
);

-- Functions point at their module by id, so renaming a module touches one row.
-- Modules are deleted by the store after it deleted (and garbage-collected the
-- code of) their functions; the foreign keys only guard against mistakes.
CREATE TABLE functions (
    module_id bigint NOT NULL REFERENCES modules (id),
    name      text COLLATE "C" NOT NULL,
    digest    text COLLATE "C" NOT NULL REFERENCES code (digest),
    size      bigint NOT NULL,
    abi       text NOT NULL,
    events    bytea,
    sinks     bytea,
    metadata  bytea,
    created   timestamptz NOT NULL,
    updated   timestamptz NOT NULL,
    PRIMARY KEY (module_id, name)
);

CREATE INDEX functions_digest ON functions (digest);

CREATE TABLE subjects (
    name       text COLLATE "C" PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    admin      boolean NOT NULL DEFAULT false,
    created    timestamptz NOT NULL
);

CREATE TABLE scripts (
    name    text COLLATE "C" PRIMARY KEY,
    source  bytea NOT NULL,
    created timestamptz NOT NULL
);
