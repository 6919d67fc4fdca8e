//! WAL frames written in large pieces rather than two system calls each.
//!
//! SQLite writes a WAL frame as two `pwrite`s, its 24-byte header and then its
//! page, at offsets that are never aligned to the file system's pages. A commit of
//! a thousand pages is two thousand system calls, each finding and locking the
//! cached file pages it straddles. This VFS is SQLite's own (`unix`) with one
//! change: what SQLite writes to a WAL in order is gathered in memory, up to
//! [`PIECE_BYTES`], and written in one call.
//!
//! Nothing gathered is ever needed by anyone before it is written, and a commit is
//! in the file when SQLite's write of it returns:
//! - a commit frame (its header's "database size after commit" is not zero) is
//!   written, with everything gathered before it, as soon as its page is gathered,
//!   and a failure is that write's error: SQLite fails the commit before it
//!   publishes it (the WAL index's header, `walIndexWriteHdr`);
//! - a sync, a size, a truncation, a read or a close of the WAL write first, and so
//!   does a barrier or lock on the database's shared memory (defence: by then a
//!   commit's frames are written already);
//! - a write elsewhere in the WAL (a frame rewritten in place, the WAL started
//!   over) writes what was gathered first, then goes on from there.
//!
//! A write that fails where no error can be returned (a barrier) is reported by the
//! WAL's next operation. A crash loses only frames of a transaction SQLite had not
//! committed, which recovery ignores, as it would SQLite's own unfinished writes.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// The name connections open with to use this VFS.
pub const NAME: &CStr = c"troth-wal";

/// The most gathered for one write: the most `unix` writes in one call (it masks a
/// write's length with `0x1ffff`), 31 frames of 4 KiB pages.
pub const PIECE_BYTES: usize = 0x1ffff;

/// WAL writes SQLite asked for, and the writes that reached the file for them.
pub fn counts() -> (u64, u64) {
    (ASKED.load(Ordering::Relaxed), MADE.load(Ordering::Relaxed))
}

static ASKED: AtomicU64 = AtomicU64::new(0);
static MADE: AtomicU64 = AtomicU64::new(0);

/// Registers the VFS (once; SQLite's registration is thread-safe) and gives its
/// name, or `None` when SQLite has no `unix` VFS to build on.
pub fn register() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // SAFETY: `put_in_place` hands SQLite a VFS that lives for the process.
    REGISTERED.get_or_init(|| unsafe { put_in_place() }).then_some(NAME)
}

/// SQLite's own VFS, under this one.
struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and shared by all of SQLite's threads.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

static BASE: OnceLock<Base> = OnceLock::new();

fn base() -> *mut ffi::sqlite3_vfs {
    BASE.get().expect("the VFS runs only once registered").0
}

unsafe fn put_in_place() -> bool {
    // SAFETY: a lookup by name; the result, when not null, lives for the process.
    let unix = unsafe { ffi::sqlite3_vfs_find(c"unix".as_ptr()) };
    if unix.is_null() || BASE.set(Base(unix)).is_err() {
        return false;
    }
    // SAFETY: `unix` is SQLite's registered default, valid and unchanging.
    let unix_ref = unsafe { &*unix };
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: (HEADER + unix_ref.szOsFile as usize) as c_int,
        mxPathname: unix_ref.mxPathname,
        pNext: std::ptr::null_mut(),
        zName: NAME.as_ptr(),
        pAppData: std::ptr::null_mut(),
        xOpen: Some(open),
        xDelete: Some(delete),
        xAccess: Some(access),
        xFullPathname: Some(full_pathname),
        xDlOpen: Some(dl_open),
        xDlError: Some(dl_error),
        xDlSym: Some(dl_sym),
        xDlClose: Some(dl_close),
        xRandomness: Some(randomness),
        xSleep: Some(sleep),
        xCurrentTime: Some(current_time),
        xGetLastError: Some(get_last_error),
        xCurrentTimeInt64: Some(current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
    // SAFETY: leaked, so it outlives every connection; not the default VFS.
    unsafe { ffi::sqlite3_vfs_register(Box::leak(vfs), 0) == ffi::SQLITE_OK }
}

/// One open file: SQLite's view (`base`, first), this layer's state, and the
/// `unix` VFS's file after it in the same allocation of `szOsFile` bytes.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The `unix` file, just past this struct.
    real: *mut ffi::sqlite3_file,
    /// For a WAL: its database's file, whose shared-memory barrier writes the WAL.
    db: *mut File,
    /// For a database: its WAL while open.
    wal: *mut File,
    /// Gathered WAL bytes, to be written at `at` (WAL files only).
    gathered: Vec<u8>,
    at: i64,
    is_wal: bool,
    /// The last write gathered was a commit frame's header: its page ends the commit.
    commit_next: bool,
    /// A failed write not yet reported to SQLite (see [`shm_barrier`]).
    failed: c_int,
}

/// A WAL frame's header: then the page. Bytes 4..8 hold, for a commit's last frame,
/// the database's size in pages after the commit; zero otherwise.
const FRAME_HEADER_BYTES: usize = 24;

/// Where the `unix` file starts: past `File`, aligned as SQLite aligns.
const HEADER: usize = std::mem::size_of::<File>().next_multiple_of(16);

static IO: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

// SAFETY (for every method below): SQLite calls a file's methods with a file this
// VFS opened (`open` set `base.pMethods` to `IO` only on success), one call at a
// time per connection; a database file and its WAL belong to one connection.

unsafe fn file<'a>(f: *mut ffi::sqlite3_file) -> &'a mut File {
    unsafe { &mut *f.cast::<File>() }
}

unsafe fn methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    unsafe { &*(*real).pMethods }
}

/// Writes what is gathered, if anything; or reports a failure not yet reported.
/// What failed is dropped: SQLite, told, does not publish it and writes again.
unsafe fn flush(f: &mut File) -> c_int {
    if f.failed != ffi::SQLITE_OK {
        f.gathered.clear();
        return std::mem::replace(&mut f.failed, ffi::SQLITE_OK);
    }
    if f.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = (unsafe { methods(f.real) }).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let rc = unsafe { write(f.real, f.gathered.as_ptr().cast(), f.gathered.len() as c_int, f.at) };
    f.gathered.clear();
    if rc == ffi::SQLITE_OK {
        MADE.fetch_add(1, Ordering::Relaxed);
    }
    rc
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    out: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = unsafe { out.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>() };
    let base = base();
    let rc = unsafe { ((*base).xOpen.expect("unix has xOpen"))(base, name, real, flags, out_flags) };
    if rc != ffi::SQLITE_OK || unsafe { (*real).pMethods.is_null() } {
        unsafe { (*out).pMethods = std::ptr::null() };
        return if rc == ffi::SQLITE_OK { ffi::SQLITE_CANTOPEN } else { rc };
    }
    let is_wal = flags & ffi::SQLITE_OPEN_WAL != 0;
    let db = if is_wal && !name.is_null() {
        // The database this WAL belongs to, opened by this VFS too (a WAL is opened
        // through its database's VFS).
        unsafe { ffi::sqlite3_database_file_object(name) }.cast::<File>()
    } else {
        std::ptr::null_mut()
    };
    unsafe {
        out.cast::<File>().write(File {
            base: ffi::sqlite3_file { pMethods: &IO },
            real,
            db,
            wal: std::ptr::null_mut(),
            gathered: Vec::new(),
            at: 0,
            is_wal,
            commit_next: false,
            failed: ffi::SQLITE_OK,
        })
    };
    if !db.is_null() {
        unsafe { (*db).wal = out.cast() };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    let this = unsafe { file(f) };
    let flushed = unsafe { flush(this) };
    if !this.db.is_null() {
        unsafe { (*this.db).wal = std::ptr::null_mut() };
    }
    if !this.wal.is_null() {
        unsafe { (*this.wal).db = std::ptr::null_mut() };
    }
    let real = this.real;
    // SAFETY: SQLite calls no method of a closed file; the memory is SQLite's.
    unsafe { std::ptr::drop_in_place(f.cast::<File>()) };
    let closed = unsafe { (methods(real).xClose.expect("unix has xClose"))(real) };
    if flushed != ffi::SQLITE_OK { flushed } else { closed }
}

unsafe extern "C" fn read(f: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let this = unsafe { file(f) };
    let rc = unsafe { flush(this) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    unsafe { (methods(this.real).xRead.expect("unix has xRead"))(this.real, buf, amount, offset) }
}

unsafe extern "C" fn write(f: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let this = unsafe { file(f) };
    if !this.is_wal {
        return unsafe { (methods(this.real).xWrite.expect("unix has xWrite"))(this.real, buf, amount, offset) };
    }
    ASKED.fetch_add(1, Ordering::Relaxed);
    let amount_bytes = amount.max(0) as usize;
    // The page of a commit frame: the commit is written before SQLite goes on.
    let ends_commit = std::mem::take(&mut this.commit_next);
    let follows = this.at + this.gathered.len() as i64 == offset;
    if this.failed != ffi::SQLITE_OK
        || (!this.gathered.is_empty() && (!follows || this.gathered.len() + amount_bytes > PIECE_BYTES))
    {
        let rc = unsafe { flush(this) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if amount_bytes > PIECE_BYTES {
        // Written at once, so a commit's page is too.
        let rc = unsafe { (methods(this.real).xWrite.expect("unix has xWrite"))(this.real, buf, amount, offset) };
        if rc == ffi::SQLITE_OK {
            MADE.fetch_add(1, Ordering::Relaxed);
        }
        return rc;
    }
    if this.gathered.is_empty() {
        this.gathered.reserve_exact(PIECE_BYTES);
        this.at = offset;
    }
    // SAFETY: SQLite passes `amount` readable bytes at `buf`.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amount_bytes) };
    this.gathered.extend_from_slice(bytes);
    if ends_commit {
        return unsafe { flush(this) };
    }
    this.commit_next = amount_bytes == FRAME_HEADER_BYTES && bytes[4..8] != [0; 4];
    ffi::SQLITE_OK
}

unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let this = unsafe { file(f) };
    let rc = unsafe { flush(this) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    unsafe { (methods(this.real).xTruncate.expect("unix has xTruncate"))(this.real, size) }
}

unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let this = unsafe { file(f) };
    let rc = unsafe { flush(this) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    unsafe { (methods(this.real).xSync.expect("unix has xSync"))(this.real, flags) }
}

unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let this = unsafe { file(f) };
    let rc = unsafe { flush(this) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    unsafe { (methods(this.real).xFileSize.expect("unix has xFileSize"))(this.real, size) }
}

unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let real = unsafe { file(f) }.real;
    unsafe { (methods(real).xLock.expect("unix has xLock"))(real, level) }
}

unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let real = unsafe { file(f) }.real;
    unsafe { (methods(real).xUnlock.expect("unix has xUnlock"))(real, level) }
}

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let real = unsafe { file(f) }.real;
    unsafe { (methods(real).xCheckReservedLock.expect("unix has xCheckReservedLock"))(real, out) }
}

unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    let this = unsafe { file(f) };
    // Whatever the operation, the file holds what SQLite wrote before it.
    let rc = unsafe { flush(this) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    unsafe { (methods(this.real).xFileControl.expect("unix has xFileControl"))(this.real, op, arg) }
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    let real = unsafe { file(f) }.real;
    unsafe { (methods(real).xSectorSize.expect("unix has xSectorSize"))(real) }
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    let real = unsafe { file(f) }.real;
    unsafe {
        (methods(real)
            .xDeviceCharacteristics
            .expect("unix has xDeviceCharacteristics"))(real)
    }
}

/// A database's WAL writes what it gathered before anything happens to the shared
/// memory that tells other connections which frames exist.
unsafe fn flush_wal_of(this: &mut File) -> c_int {
    if this.wal.is_null() {
        return ffi::SQLITE_OK;
    }
    unsafe { flush(&mut *this.wal) }
}

/// [`flush_wal_of`] for a method that returns no error SQLite reads: a failed write
/// is kept for the WAL's next operation to report.
unsafe fn flush_wal_keeping_failure(this: &mut File) {
    let rc = unsafe { flush_wal_of(this) };
    if rc != ffi::SQLITE_OK {
        // Not null: with no WAL there was nothing to write.
        unsafe { (*this.wal).failed = rc };
    }
}

unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let real = unsafe { file(f) }.real;
    match unsafe { methods(real) }.xShmMap {
        Some(map) => unsafe { map(real, region, size, extend, out) },
        None => ffi::SQLITE_IOERR_SHMMAP,
    }
}

unsafe extern "C" fn shm_lock(f: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    let this = unsafe { file(f) };
    let flushed = unsafe { flush_wal_of(this) };
    // An unlock always reaches `unix`: SQLite ignores an unlock's result and takes
    // the lock as released, and a lock kept would keep every writer out.
    if flushed != ffi::SQLITE_OK && flags & ffi::SQLITE_SHM_UNLOCK == 0 {
        return flushed;
    }
    let locked = match unsafe { methods(this.real) }.xShmLock {
        Some(lock) => unsafe { lock(this.real, offset, n, flags) },
        None => ffi::SQLITE_IOERR_SHMLOCK,
    };
    if flushed != ffi::SQLITE_OK { flushed } else { locked }
}

unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    let this = unsafe { file(f) };
    // A barrier returns nothing. (A commit's frames are written before its barrier.)
    unsafe { flush_wal_keeping_failure(this) };
    if let Some(barrier) = unsafe { methods(this.real) }.xShmBarrier {
        unsafe { barrier(this.real) }
    }
}

unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let this = unsafe { file(f) };
    unsafe { flush_wal_keeping_failure(this) };
    match unsafe { methods(this.real) }.xShmUnmap {
        Some(unmap) => unsafe { unmap(this.real, delete) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn fetch(f: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    let real = unsafe { file(f) }.real;
    match unsafe { methods(real) }.xFetch {
        Some(fetch) => unsafe { fetch(real, offset, amount, out) },
        None => {
            unsafe { *out = std::ptr::null_mut() };
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn unfetch(f: *mut ffi::sqlite3_file, offset: i64, page: *mut c_void) -> c_int {
    let real = unsafe { file(f) }.real;
    match unsafe { methods(real) }.xUnfetch {
        Some(unfetch) => unsafe { unfetch(real, offset, page) },
        None => ffi::SQLITE_OK,
    }
}

// The rest of the VFS is `unix`'s, called with `unix` itself.

unsafe extern "C" fn delete(_: *mut ffi::sqlite3_vfs, name: *const c_char, sync_dir: c_int) -> c_int {
    unsafe { ((*base()).xDelete.expect("unix has xDelete"))(base(), name, sync_dir) }
}

unsafe extern "C" fn access(_: *mut ffi::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    unsafe { ((*base()).xAccess.expect("unix has xAccess"))(base(), name, flags, out) }
}

unsafe extern "C" fn full_pathname(_: *mut ffi::sqlite3_vfs, name: *const c_char, n: c_int, out: *mut c_char) -> c_int {
    unsafe { ((*base()).xFullPathname.expect("unix has xFullPathname"))(base(), name, n, out) }
}

unsafe extern "C" fn dl_open(_: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    match unsafe { (*base()).xDlOpen } {
        Some(open) => unsafe { open(base(), name) },
        None => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn dl_error(_: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    if let Some(error) = unsafe { (*base()).xDlError } {
        unsafe { error(base(), n, out) }
    }
}

type Symbol = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn dl_sym(_: *mut ffi::sqlite3_vfs, handle: *mut c_void, name: *const c_char) -> Option<Symbol> {
    match unsafe { (*base()).xDlSym } {
        Some(sym) => unsafe { sym(base(), handle, name) },
        None => None,
    }
}

unsafe extern "C" fn dl_close(_: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    if let Some(close) = unsafe { (*base()).xDlClose } {
        unsafe { close(base(), handle) }
    }
}

unsafe extern "C" fn randomness(_: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    unsafe { ((*base()).xRandomness.expect("unix has xRandomness"))(base(), n, out) }
}

unsafe extern "C" fn sleep(_: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    unsafe { ((*base()).xSleep.expect("unix has xSleep"))(base(), micros) }
}

unsafe extern "C" fn current_time(_: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    unsafe { ((*base()).xCurrentTime.expect("unix has xCurrentTime"))(base(), out) }
}

unsafe extern "C" fn get_last_error(_: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    match unsafe { (*base()).xGetLastError } {
        Some(error) => unsafe { error(base(), n, out) },
        None => 0,
    }
}

unsafe extern "C" fn current_time_int64(_: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    unsafe { ((*base()).xCurrentTimeInt64.expect("unix has xCurrentTimeInt64"))(base(), out) }
}
