-- Version 5: searching key notes without scanning every license. A trigram full-text index of
-- the notes (any 3+ character substring, case-insensitive); its rows are mapped to license ids
-- through license_note_rows (license rowids are not stable across VACUUM, these are).
CREATE VIRTUAL TABLE license_notes USING fts5(note, license_id UNINDEXED, tokenize = 'trigram');
CREATE TABLE license_note_rows (
    license_id  TEXT PRIMARY KEY,
    fts_rowid   INTEGER NOT NULL
);
INSERT INTO license_notes (note, license_id)
    SELECT note, id FROM licenses WHERE note IS NOT NULL AND note <> '';
INSERT INTO license_note_rows (license_id, fts_rowid)
    SELECT license_id, rowid FROM license_notes;

CREATE TRIGGER licenses_note_insert AFTER INSERT ON licenses
WHEN new.note IS NOT NULL AND new.note <> ''
BEGIN
    INSERT INTO license_notes (note, license_id) VALUES (new.note, new.id);
    INSERT INTO license_note_rows (license_id, fts_rowid) VALUES (new.id, last_insert_rowid());
END;

CREATE TRIGGER licenses_note_delete AFTER DELETE ON licenses
BEGIN
    DELETE FROM license_notes
        WHERE rowid = (SELECT fts_rowid FROM license_note_rows WHERE license_id = old.id);
    DELETE FROM license_note_rows WHERE license_id = old.id;
END;

CREATE TRIGGER licenses_note_update AFTER UPDATE OF note ON licenses
BEGIN
    DELETE FROM license_notes
        WHERE rowid = (SELECT fts_rowid FROM license_note_rows WHERE license_id = old.id);
    DELETE FROM license_note_rows WHERE license_id = old.id;
    INSERT INTO license_notes (note, license_id)
        SELECT new.note, new.id WHERE new.note IS NOT NULL AND new.note <> '';
    INSERT INTO license_note_rows (license_id, fts_rowid)
        SELECT new.id, last_insert_rowid() WHERE new.note IS NOT NULL AND new.note <> '';
END;
