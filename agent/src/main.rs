//! `edge-agent`: parse arguments, set up logging, hand over to the command.

use std::process::ExitCode;

use clap::Parser;

mod capture;
mod cli;
mod output;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_level())),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        cli::Command::Capture(args) => capture::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, outermost context first: what failed, then why.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
