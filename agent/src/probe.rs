//! `edge-agent probe`: what this machine can capture with, and a config
//! snippet that uses it.

use anyhow::Result;

/// `edge-agent probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Print JSON (board, cpu, memory_mb, cameras, microphones, encoders,
    /// suggested_config) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Probe and print; a machine without cameras or hardware encoders is not
/// an error, only a report that says so.
pub fn run(args: &ProbeArgs) -> Result<()> {
    let report = hardware::probe();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
