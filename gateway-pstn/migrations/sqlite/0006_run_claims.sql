-- Takeover of a dead node's calls by another node sharing the database. A run whose heartbeat is older than
-- `calls.takeover_after_secs` is claimed by one surviving run with one conditional statement (only if it is not
-- claimed already by a run that is itself alive), and the claimer settles the dead run's calls. `claimed_by` is
-- the claiming run, `claimed_at` when it claimed. A run that finds itself claimed stops heartbeating its calls.

ALTER TABLE gateway_runs ADD COLUMN claimed_by TEXT;
ALTER TABLE gateway_runs ADD COLUMN claimed_at BIGINT;
