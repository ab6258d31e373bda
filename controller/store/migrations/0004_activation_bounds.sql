-- 0004: bounded activation records (issue 10).

-- The recorder keeps only the beginning of a large output or error message;
-- truncated says so.
ALTER TABLE activations ADD COLUMN truncated boolean NOT NULL DEFAULT false;

-- The whole output of an activation whose record was truncated, kept by each
-- of its queued deliveries so that sinks get all of it. NULL: the delivery
-- reads the activation's output, which is whole.
ALTER TABLE sink_deliveries ADD COLUMN output bytea;
