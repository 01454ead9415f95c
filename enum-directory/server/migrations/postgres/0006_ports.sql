-- Number porting: a gaining provider's request to take a number another provider holds. The losing provider
-- releases it or objects (with a reason code) before the window ends; without either it completes at the
-- window's end. At most one open request per number.
CREATE TABLE port_requests (
    id               BIGSERIAL PRIMARY KEY,
    e164             TEXT   NOT NULL,
    losing_provider  BIGINT NOT NULL REFERENCES providers (id),
    gaining_provider BIGINT NOT NULL REFERENCES providers (id),
    services         TEXT   NOT NULL,
    master_key       TEXT,
    state            TEXT   NOT NULL,
    reason           TEXT,
    filed_at         BIGINT NOT NULL,
    window_ends_at   BIGINT NOT NULL,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX port_requests_open ON port_requests (e164) WHERE state = 'pending';
CREATE INDEX port_requests_due ON port_requests (window_ends_at) WHERE state = 'pending';
