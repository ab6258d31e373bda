-- 0013: kept versions of functions (issue 14: versions and rollback). Each
-- create-then-update of a function adds a row; the newest row is the
-- function as it is. Rows are numbered per function and never renumbered;
-- the controller removes the oldest beyond its --function-versions bound.
-- A version keeps its code alive: the code of a digest is collected only
-- when no function and no version refers to it. spec is the version's
-- settings as one JSON object of the stored settings (events, sinks,
-- metadata, config). Functions made before this migration get their first
-- row (number 1, themselves) at their first update.
CREATE TABLE function_versions (
    module_id bigint NOT NULL,
    name      text COLLATE "C" NOT NULL,
    number    bigint NOT NULL,
    digest    text COLLATE "C" NOT NULL REFERENCES code (digest),
    size      bigint NOT NULL,
    abi       text NOT NULL,
    spec      bytea NOT NULL,
    created   timestamptz NOT NULL,
    PRIMARY KEY (module_id, name, number),
    FOREIGN KEY (module_id, name) REFERENCES functions (module_id, name)
);

-- The code collection's "does a version still use this digest?".
CREATE INDEX function_versions_digest ON function_versions (digest);
