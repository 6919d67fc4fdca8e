//! How troth's SQLite uses memory and the disk, below rusqlite: the one crate of
//! the workspace with `unsafe` code, because both pieces are set through SQLite's C
//! interface.
//!
//! - [`pagecache`]: a layer over SQLite's page cache, so that a commit does not walk
//!   all of it. Installed once by the binary, before any connection exists.
//! - [`wal`]: a VFS that writes WAL frames in pieces of 128 KiB rather than two system
//!   calls each. The store opens its connections with it.

pub mod pagecache;
pub mod wal;
