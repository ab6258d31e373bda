-- 0003: activation records and the durable queue of sink deliveries.

-- One row per activation, whatever ran it. The id (protocol.NewActivationID)
-- sorts as text in time order; replays are dropped by id (ON CONFLICT DO
-- NOTHING). Rows are kept when their function is deleted.
CREATE TABLE activations (
    id          text COLLATE "C" PRIMARY KEY,
    module      text COLLATE "C" NOT NULL,
    function    text COLLATE "C" NOT NULL,
    digest      text COLLATE "C" NOT NULL,
    agent       text COLLATE "C" NOT NULL,
    source      text NOT NULL,
    code        integer NOT NULL,
    message     text NOT NULL,
    output      bytea,
    started     timestamptz NOT NULL,
    duration_ns bigint NOT NULL,
    recorded    timestamptz NOT NULL
);

-- ListActivations by function (ascending id), and by start time.
CREATE INDEX activations_module_function_id ON activations (module, function, id);
CREATE INDEX activations_started ON activations (started);

-- One row per (activation, sink) still to deliver; delivered rows are
-- deleted. The sink's JSON is copied at record time, so editing the function
-- later does not change where a queued result goes. Module, function, output
-- and start time are read from the activation.
CREATE TABLE sink_deliveries (
    activation_id text COLLATE "C" NOT NULL REFERENCES activations (id) ON DELETE CASCADE,
    sink_index    integer NOT NULL,
    sink          bytea,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    next_attempt  timestamptz NOT NULL,
    PRIMARY KEY (activation_id, sink_index)
);

-- PendingDeliveries when few are due (the planner picks it over the primary key).
CREATE INDEX sink_deliveries_next_attempt ON sink_deliveries (next_attempt);
-- SinkFailures: the deliveries that failed at least once are few.
CREATE INDEX sink_deliveries_failed ON sink_deliveries (activation_id) WHERE attempts > 0;
