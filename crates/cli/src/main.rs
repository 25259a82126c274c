//! The `switchyard` binary: parses arguments and hands off to the library
//! crates. Nothing here is more than wiring.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod eval;

/// Switchyard: feature flags, A/B experiments and experiment analytics in
/// one self-hosted binary.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Evaluate flags of a configuration document for one context and print
    /// the result as JSON.
    Eval {
        /// Configuration document (JSON), as in docs/evaluation.md.
        #[arg(long)]
        config: PathBuf,
        /// Context as a JSON object, e.g. '{"targetingKey":"user-1"}'.
        #[arg(long, default_value = "{}")]
        context: String,
        /// Evaluate only this flag (default: every flag).
        #[arg(long)]
        flag: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("switchyard {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Eval {
            config,
            context,
            flag,
        } => eval::run(&config, &context, flag.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
