-- Lease epochs (every taking of a lease gets the next one; writes carry it) and the format of
-- each stored JSON payload.
ALTER TABLE runs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE journal ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
