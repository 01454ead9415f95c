-- Number porting: a gaining provider's request to take a number another provider holds. The losing provider
-- releases it or objects (with a reason code) before the window ends; without either it completes at the
-- window's end. At most one open request per number.
CREATE TABLE port_requests (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    e164             TEXT   NOT NULL,
    losing_provider  INTEGER NOT NULL REFERENCES providers (id),
    gaining_provider INTEGER NOT NULL REFERENCES providers (id),
    services         TEXT   NOT NULL,
    master_key       TEXT,
    state            TEXT   NOT NULL,
    reason           TEXT,
    filed_at         INTEGER NOT NULL,
    window_ends_at   INTEGER NOT NULL,
    closed_at        INTEGER
);
CREATE UNIQUE INDEX port_requests_open ON port_requests (e164) WHERE state = 'pending';
CREATE INDEX port_requests_due ON port_requests (window_ends_at) WHERE state = 'pending';
