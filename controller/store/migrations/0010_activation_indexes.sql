-- 0009 (issue 13): indexes for GET /v1/activations newest first with its
-- filters, and for following it in the order activations are recorded.
-- (Meant as 0010 beside the logs column; renumber when merging.)

-- An agent's activations, newest first (agent = ANY(...) ORDER BY id DESC).
CREATE INDEX activations_agent_id ON activations (agent, id);
-- The failed ones, newest first: few beside the successful ones.
CREATE INDEX activations_failed_id ON activations (id) WHERE code <> 0;
-- Followers read what was recorded since their last poll, in the order it
-- was recorded ((recorded, id) > ($1, $2) ORDER BY recorded, id).
CREATE INDEX activations_recorded_id ON activations (recorded, id);
