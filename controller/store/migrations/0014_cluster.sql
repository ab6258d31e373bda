-- 0014: several controllers on one database (issue 15, point 2).
--
-- The change feed: triggers on the tables whose committed changes other
-- controllers must learn of send pg_notify('wisp_changes', payload), which
-- Postgres delivers to every listening session at commit (identical
-- payloads of one transaction coalesce). The payload is
-- '<schema>:<kind>:<key>': the schema of the table that changed, since a
-- channel is per database and several Wisp schemas may share one; the kind
-- is a store.ChangeKind and the key narrows it (see controller/store/
-- changes.go). A key over 1,024 bytes is left out ('<schema>:<kind>:', any
-- of that kind), so no write can fail on NOTIFY's 8,000-byte bound.
-- Not notified: TouchAgent's columns (name, labels, last_seen: every agent
-- connection writes them), activations, deliveries, the quarantine, code.
--
-- The functions carry the search_path they were created with, so a write
-- made by hand in a session with another search_path finds modules.

CREATE FUNCTION wisp_notify(tbl_schema text, kind text, key text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT pg_notify('wisp_changes', tbl_schema || ':' || kind || ':' ||
        CASE WHEN octet_length(key) <= 1024 THEN key ELSE '' END)
$$;

-- Rows keyed by a name or an id of their own: modules, scripts, subjects,
-- join tokens, agents. TG_ARGV[0] is the kind, TG_ARGV[1] the key column.
CREATE FUNCTION wisp_notify_row() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM wisp_notify(TG_TABLE_SCHEMA, TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1]);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM wisp_notify(TG_TABLE_SCHEMA, TG_ARGV[0], to_jsonb(NEW) ->> TG_ARGV[1]);
    END IF;
    RETURN NULL;
END
$$;

-- Rows of a module: functions, their kept versions, secrets. The key is
-- '<module>/<name>'; a row whose module is gone already (secrets deleted by
-- the module's cascade) notifies the kind without a key.
CREATE FUNCTION wisp_notify_module_row() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM wisp_notify(TG_TABLE_SCHEMA, TG_ARGV[0],
        (SELECT m.name FROM modules m WHERE m.id = r.module_id) || '/' || r.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER functions_changed AFTER INSERT OR UPDATE OR DELETE ON functions
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_module_row('functions');
-- Kept versions decide the code agents keep for rollbacks
-- (DesiredFunction.KeepDigests): a prune changes the desired set.
CREATE TRIGGER function_versions_changed AFTER INSERT OR DELETE ON function_versions
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_module_row('functions');
CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_module_row('secrets');
CREATE TRIGGER modules_changed AFTER INSERT OR DELETE OR UPDATE OF name ON modules
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_row('modules', 'name');
CREATE TRIGGER scripts_changed AFTER INSERT OR UPDATE OR DELETE ON scripts
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_row('scripts', 'name');
CREATE TRIGGER subjects_changed AFTER INSERT OR DELETE OR UPDATE OF token_hash, admin ON subjects
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_row('subjects', 'name');
CREATE TRIGGER join_tokens_changed AFTER INSERT OR UPDATE OR DELETE ON join_tokens
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_row('join_tokens', 'id');
CREATE TRIGGER agents_joined_or_removed AFTER INSERT OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION wisp_notify_row('agents', 'id');
-- What operators set, only when it changed (TouchAgent writes none of it).
CREATE TRIGGER agents_controlled AFTER UPDATE OF cordoned, operator_labels, mem_cap_bytes ON agents
    FOR EACH ROW WHEN ((OLD.cordoned, OLD.operator_labels, OLD.mem_cap_bytes)
        IS DISTINCT FROM (NEW.cordoned, NEW.operator_labels, NEW.mem_cap_bytes))
    EXECUTE FUNCTION wisp_notify_row('agents', 'id');

-- Membership (controller/cluster). A controller refreshes its row every
-- second or two; one silent for longer than the dead bound (10 s) is dead,
-- and any controller removes it with its links. last_seen and started come
-- from the database's clock, so the controllers' clocks need not agree.
CREATE TABLE controllers (
    id        text COLLATE "C" PRIMARY KEY,
    rest_addr text NOT NULL DEFAULT '',
    quic_addr text NOT NULL DEFAULT '',
    started   timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);

-- A session between an agent and a controller, written when it is up and
-- removed when it ends (or with its agent or its controller). since names
-- the session: an ended session removes its own row, never a newer one of
-- the same pair. The rest is what the agent said in that session's hello,
-- so that GET /v1/agents on any controller can show it.
CREATE TABLE agent_links (
    agent_id        text COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    controller_id   text COLLATE "C" NOT NULL REFERENCES controllers (id) ON DELETE CASCADE,
    since           timestamptz NOT NULL,
    os              text NOT NULL DEFAULT '',
    arch            text NOT NULL DEFAULT '',
    engine          text NOT NULL DEFAULT '',
    version         text NOT NULL DEFAULT '',
    cpus            bigint NOT NULL DEFAULT 0,
    mem_total_bytes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, controller_id)
);

-- A dead controller's links go with it (the cascade).
CREATE INDEX agent_links_controller ON agent_links (controller_id);
