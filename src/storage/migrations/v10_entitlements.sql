-- Version 10: entitlements. A product declares its feature codes and each license carries some
-- of them, both as codes joined by ',' ('' for none): the license row the validation reads
-- brings its entitlements, with no join.
ALTER TABLE products ADD COLUMN entitlements TEXT NOT NULL DEFAULT '';
ALTER TABLE licenses ADD COLUMN entitlements TEXT NOT NULL DEFAULT '';
