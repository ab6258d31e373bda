-- 0006: join tokens are counted. uses is how many agents may join with a
-- token; NULL (the tokens made before this migration) means no limit, and
-- `wisp-controller token list` shows them so that they can be revoked.
-- used counts the joins, in the same transaction that creates the agent.
ALTER TABLE join_tokens ADD COLUMN uses integer CHECK (uses > 0);
ALTER TABLE join_tokens ADD COLUMN used integer NOT NULL DEFAULT 0;
