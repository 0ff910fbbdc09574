//! Giving space back to the file system. Pruned audit rows leave free pages inside the file;
//! with `auto_vacuum = INCREMENTAL` the writer moves them to the end of the file and truncates
//! it, a few thousand pages per job, so no request waits long behind it.

use rusqlite::Connection;

use crate::error::Error;

/// `PRAGMA auto_vacuum` value of incremental mode.
const INCREMENTAL: i64 = 2;

/// Size figures of the database file, in pages (see `PRAGMA page_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    pub page_size: u64,
    pub page_count: u64,
    pub freelist: u64,
}

pub fn pages(conn: &Connection) -> Result<Pages, Error> {
    let get = |pragma: &str| -> Result<u64, Error> {
        Ok(conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(Pages {
        page_size: get("page_size")?,
        page_count: get("page_count")?,
        freelist: get("freelist_count")?,
    })
}

/// True when the database gives free pages back (`auto_vacuum = INCREMENTAL`).
pub fn is_incremental(conn: &Connection) -> Result<bool, Error> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    Ok(mode == INCREMENTAL)
}

/// Turns incremental auto-vacuum on for a database created without it (before version 8).
/// That takes one full `VACUUM`: the whole file is rewritten, through the WAL, in about the time
/// it takes to copy it, and needs free disk space of about twice its size meanwhile (the
/// temporary copy, then the WAL). Returns whether it ran. Must run on a connection outside any
/// transaction, before the writer starts.
pub fn enable_incremental(conn: &Connection) -> Result<bool, Error> {
    if is_incremental(conn)? {
        return Ok(false);
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    if is_incremental(conn)? {
        // An empty database takes the setting without a VACUUM.
        return Ok(false);
    }
    // The temporary copy VACUUM builds goes to a file (SQLITE_TMPDIR, else /var/tmp or /tmp),
    // not to memory: a database larger than the server's RAM must not fail to start.
    conn.execute_batch("PRAGMA temp_store = FILE")?;
    let vacuumed = conn.execute_batch("VACUUM");
    conn.execute_batch("PRAGMA temp_store = MEMORY")?;
    vacuumed?;
    // The rewritten file is in the WAL: copy it back now so the WAL does not stay that large.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    is_incremental(conn)
}

/// Moves up to `max_pages` free pages to the end of the file and cuts them off, inside the
/// current transaction (a writer job). The file shrinks once the WAL is checkpointed. Returns
/// the pages freed; 0 when the database is not in incremental mode.
pub fn reclaim(conn: &Connection, max_pages: u32) -> Result<u64, Error> {
    let before = pages(conn)?;
    if before.freelist == 0 || !is_incremental(conn)? {
        return Ok(0);
    }
    // The pragma frees one page per step: run it to the end.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({max_pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    let after = pages(conn)?;
    Ok(before.freelist.saturating_sub(after.freelist))
}
