-- Calls in progress, so that a gateway restarted after a crash (kill -9, power loss) can settle what its calls
-- used and close their records. `gateway_runs`: one row per running process of a node, with the last time it
-- confirmed that its calls were up (the heartbeat). `live_calls`: one row per call holding credit, from its
-- hold to its settlement or release; `ended_at` is set the moment the gateway sees the call end.

CREATE TABLE gateway_runs (
    run_id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
CREATE INDEX gateway_runs_node ON gateway_runs (node);

CREATE TABLE live_calls (
    call_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    hold_id BIGINT NOT NULL,
    destination TEXT NOT NULL,
    currency TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    carrier TEXT,
    attempt_started_at BIGINT,
    answered_at BIGINT,
    paid_seconds BIGINT NOT NULL DEFAULT 0,
    ended_at BIGINT
);
CREATE INDEX live_calls_run ON live_calls (run_id);
