use std::process::ExitCode;

use clap::Parser;

// The writer thread frees what request threads allocated; glibc's arenas contend on
// that, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any SQLite connection exists (see the crate): commits no longer walk
    // the whole page cache.
    let pagecache = troth_sqlite_io::pagecache::install();
    let cli = troth::cli::Cli::parse();
    troth::cli::init_logging();
    tracing::debug!(?pagecache, "SQLite's page cache layer");
    match troth::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
