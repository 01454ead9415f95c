-- Number ports this provider is a party of, as the directory reported them (`/v1/ports`): the gaining side's
-- requests (filed after a sign-up whose number another provider holds) and the losing side's (another
-- provider asked for one of our numbers). The directory is the record; a row remembers which side we are and
-- makes each closed port's local effect (bind the number here, or stop treating it as ours) happen once.
CREATE TABLE ports (
    id BIGINT PRIMARY KEY,
    number TEXT NOT NULL,
    side TEXT NOT NULL,
    user_id TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    window_ends_at_ms BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ports_number ON ports (number);
CREATE INDEX ports_state ON ports (state);
