//! SQLite's page cache, without a scan of all of it at the end of a transaction.
//!
//! When a write transaction ends, SQLite drops the cached pages past the database's
//! last page (`sqlite3PcacheTruncate`). Its page cache (`pcache1`) remembers the
//! largest page number it has held and looks only at the hash slots between the new
//! end and that number, unless the gap is wider than its hash table: then it walks
//! every slot and every page it holds. B-tree balancing gives a page, for a moment,
//! the number of the page after the lock byte (`pgnoTemp` in `balance_nonroot`:
//! page 262,145 with 4 KiB pages, 1 GiB into the file), and the cache remembers that
//! number as its largest until the next walk. So in a database under 1 GiB, every
//! transaction that split a page walks the whole cache when it ends: with the log
//! writer's 64 MiB (16,384 pages) about 90 µs a commit, a sixth of its time under
//! single-event ingest, and as much again on the threads that follow the log.
//!
//! [`install`] puts a thin layer over SQLite's own cache. The layer keeps its own
//! largest page number, leaving out the borrowed one, and passes a truncation on
//! only when a page may lie past the new end. Everything else is SQLite's cache as
//! it was. It is installed through `sqlite3_config`, which rusqlite does not wrap.

use std::ffi::{c_int, c_uint};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// What [`install`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The layer is in place from now on.
    Installed,
    /// An earlier call put it in place.
    AlreadyInstalled,
    /// SQLite was in use already (a connection had been opened): its cache stays
    /// as it is for the life of the process.
    TooLate,
}

/// Puts the layer over SQLite's page cache. Call it before the process opens any
/// SQLite connection, while no other thread uses SQLite (`sqlite3_config` is not
/// thread-safe); later calls change nothing.
pub fn install() -> Outcome {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let mut now = false;
    let installed = *INSTALLED.get_or_init(|| {
        now = true;
        // SAFETY: the caller opens no connection meanwhile (see above); once SQLite
        // is initialised, both calls refuse with SQLITE_MISUSE and change nothing.
        unsafe { put_in_place() }
    });
    match (installed, now) {
        (true, true) => Outcome::Installed,
        (true, false) => Outcome::AlreadyInstalled,
        (false, _) => Outcome::TooLate,
    }
}

/// What the layer has seen since the process started: for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Truncations passed on to SQLite's cache (a page may lie past the new end).
    pub passed: u64,
    /// Truncations the layer answered itself: nothing lies past the new end.
    pub answered: u64,
    /// Pages balancing gave the borrowed number, each of which made SQLite's cache
    /// walk all of itself at the next truncation.
    pub borrowed: u64,
}

pub fn counts() -> Counts {
    Counts {
        passed: PASSED.load(Ordering::Relaxed),
        answered: ANSWERED.load(Ordering::Relaxed),
        borrowed: BORROWED.load(Ordering::Relaxed),
    }
}

static PASSED: AtomicU64 = AtomicU64::new(0);
static ANSWERED: AtomicU64 = AtomicU64::new(0);
static BORROWED: AtomicU64 = AtomicU64::new(0);

/// SQLite's own cache methods, as they were before the layer.
struct Own {
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> *mut ffi::sqlite3_pcache,
    cachesize: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_int),
    pagecount: unsafe extern "C" fn(*mut ffi::sqlite3_pcache) -> c_int,
    fetch: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint, c_int) -> *mut ffi::sqlite3_pcache_page,
    unpin: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_int),
    rekey: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, *mut ffi::sqlite3_pcache_page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(*mut ffi::sqlite3_pcache, c_uint),
    destroy: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
    shrink: unsafe extern "C" fn(*mut ffi::sqlite3_pcache),
}

static OWN: OnceLock<Own> = OnceLock::new();

/// The byte offset SQLite locks, and never stores a page at (`PENDING_BYTE`, which
/// only SQLite's test interface changes).
const LOCK_BYTE: c_uint = 0x4000_0000;

/// One cache of SQLite's, as the layer hands it out.
struct Cache {
    own: *mut ffi::sqlite3_pcache,
    /// The number balancing gives a page for a moment: the page after the lock byte.
    borrowed: c_uint,
    /// No page past this number is held (0: none).
    last: c_uint,
}

unsafe fn put_in_place() -> bool {
    let mut own = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
    // SAFETY: GETPCACHE2 writes one `sqlite3_pcache_methods2` through the pointer.
    if unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, own.as_mut_ptr()) } != ffi::SQLITE_OK {
        return false;
    }
    // SAFETY: written just above (zeroed before, which is a valid value too).
    let own = unsafe { own.assume_init() };
    let methods = (|| {
        Some(Own {
            create: own.xCreate?,
            cachesize: own.xCachesize?,
            pagecount: own.xPagecount?,
            fetch: own.xFetch?,
            unpin: own.xUnpin?,
            rekey: own.xRekey?,
            truncate: own.xTruncate?,
            destroy: own.xDestroy?,
            shrink: own.xShrink?,
        })
    })();
    let Some(methods) = methods else {
        return false;
    };
    if OWN.set(methods).is_err() {
        return false;
    }
    let layer = ffi::sqlite3_pcache_methods2 {
        iVersion: own.iVersion,
        pArg: own.pArg,
        // Initialising and shutting down concern SQLite's cache as a whole.
        xInit: own.xInit,
        xShutdown: own.xShutdown,
        xCreate: Some(create),
        xCachesize: Some(cachesize),
        xPagecount: Some(pagecount),
        xFetch: Some(fetch),
        xUnpin: Some(unpin),
        xRekey: Some(rekey),
        xTruncate: Some(truncate),
        xDestroy: Some(destroy),
        xShrink: Some(shrink),
    };
    // SAFETY: PCACHE2 copies the struct it is given; every method above stays valid
    // for the life of the process (functions, and `OWN` is set for good).
    let set = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &layer as *const ffi::sqlite3_pcache_methods2,
        )
    };
    set == ffi::SQLITE_OK
}

fn own() -> &'static Own {
    // The layer's methods are reachable only after `OWN` was set.
    OWN.get()
        .expect("the page cache layer is installed only with SQLite's own methods")
}

/// SAFETY (for all below): SQLite calls these with caches this layer made
/// (`create`), one call at a time per cache (its connection's mutex), and pages of
/// that cache.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    unsafe { &mut *p.cast::<Cache>() }
}

unsafe extern "C" fn create(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let own = unsafe { (self::own().create)(page_size, extra, purgeable) };
    if own.is_null() {
        return own;
    }
    let page_size = c_uint::try_from(page_size).unwrap_or(c_uint::MAX).max(1);
    let layer = Box::new(Cache {
        own,
        borrowed: LOCK_BYTE / page_size + 1,
        last: 0,
    });
    Box::into_raw(layer).cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    unsafe { (own().cachesize)(cache(p).own, pages) }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    unsafe { (own().pagecount)(cache(p).own) }
}

unsafe extern "C" fn fetch(p: *mut ffi::sqlite3_pcache, key: c_uint, create: c_int) -> *mut ffi::sqlite3_pcache_page {
    let cache = unsafe { cache(p) };
    let page = unsafe { (own().fetch)(cache.own, key, create) };
    if !page.is_null() && key != cache.borrowed {
        cache.last = cache.last.max(key);
    }
    page
}

unsafe extern "C" fn unpin(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    unsafe { (own().unpin)(cache(p).own, page, discard) }
}

unsafe extern "C" fn rekey(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, from: c_uint, to: c_uint) {
    let cache = unsafe { cache(p) };
    unsafe { (own().rekey)(cache.own, page, from, to) };
    // Balancing moves the page on to its own number before the transaction can end.
    if to == cache.borrowed {
        BORROWED.fetch_add(1, Ordering::Relaxed);
    } else {
        cache.last = cache.last.max(to);
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let cache = unsafe { cache(p) };
    if limit == 0 || limit <= cache.last {
        unsafe { (own().truncate)(cache.own, limit) };
        cache.last = limit.saturating_sub(1);
        PASSED.fetch_add(1, Ordering::Relaxed);
    } else {
        ANSWERED.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: made by `create` with `Box::into_raw`; SQLite destroys a cache once.
    let cache = unsafe { Box::from_raw(p.cast::<Cache>()) };
    unsafe { (own().destroy)(cache.own) }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    unsafe { (own().shrink)(cache(p).own) }
}
