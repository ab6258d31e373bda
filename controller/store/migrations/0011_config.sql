-- 0011: a function's configuration (issue 14): its environment, the names
-- of the module's secrets it reads and its egress allowlist, as the
-- normalised JSON of fnspec.Spec.Encode (like events, sinks and metadata),
-- read back through fnspec.ParseConfig. No secret value is ever in it.
-- NULL: no configuration (the controller's default allowlist applies).
ALTER TABLE functions ADD COLUMN config bytea;
