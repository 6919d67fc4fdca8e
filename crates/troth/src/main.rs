use std::process::ExitCode;

use clap::Parser;

// The writer thread frees what request threads allocated; glibc's arenas contend on
// that, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = troth::cli::Cli::parse();
    troth::cli::init_logging();
    match troth::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
