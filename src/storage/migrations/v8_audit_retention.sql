-- Version 8: audit retention. Raw audit rows are pruned after their kind's retention (see
-- `--audit-retention-*`); before a row goes, it is counted here, so the dashboard's figures
-- outlive the rows they were computed from. One row per tenant, product, UTC day, action,
-- outcome code and HWID binding: the number of raw rows folded into it.
CREATE TABLE audit_daily (
    tenant_id   TEXT NOT NULL,
    -- '' when the event named no product
    product_id  TEXT NOT NULL,
    -- midnight UTC of the events' day, in ms
    day         INTEGER NOT NULL,
    action      TEXT NOT NULL,
    -- the event's detail.code ('' when it had none)
    code        TEXT NOT NULL,
    -- 1 for a key.validate that bound its machine (detail.hwidBound)
    hwid_bound  INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    -- day first: the dashboard reads the last 30 days, of one tenant or of all
    PRIMARY KEY (day, tenant_id, product_id, action, code, hwid_bound)
) WITHOUT ROWID;
