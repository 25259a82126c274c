-- Flag metadata: an object of booleans, strings and numbers, returned with
-- every evaluation (OFREP `metadata`).
ALTER TABLE flags ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
