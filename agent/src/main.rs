//! `edge-agent`: parse arguments, set up logging, hand over to the command.

use std::process::ExitCode;

use clap::Parser;
use edge_agent::{bench, capture, cli, config, export, probe, replay, run};

// Link-time definitions for this executable (see the module): not library
// code.
mod gio_types;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_level())),
        )
        .with_writer(std::io::stderr)
        // journald and log files get plain text, a terminal colours.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(args.config.as_ref()),
        cli::Command::Capture(args) => capture::run(&args),
        cli::Command::Replay(args) => replay::run(&args),
        cli::Command::Export(args) => export::run(&args),
        cli::Command::Verify(args) => export::verify(args.config.as_ref()),
        cli::Command::CheckConfig(args) => check_config(&args),
        cli::Command::Probe(args) => probe::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
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

/// `edge-agent check-config`: load, check, summarise.
fn check_config(args: &cli::CheckConfigArgs) -> anyhow::Result<()> {
    let (name, c) = match &args.config {
        Some(path) => (path.display().to_string(), config::Config::load(path)?),
        None => ("embedded defaults".to_owned(), config::Config::embedded_default()),
    };
    println!(
        "{name}: ok ({} stream(s), {} sensor(s), store {}, http {})",
        c.streams.len(),
        c.sensors.len(),
        c.store.path.display(),
        c.http.listen
    );
    Ok(())
}
