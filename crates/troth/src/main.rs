use std::process::ExitCode;

use clap::Parser;

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
