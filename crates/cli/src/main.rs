//! The `switchyard` binary: parses arguments and hands off to the library
//! crates. Nothing here is more than wiring.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_key;
mod analyze;
mod eval;
mod events;
mod relay;
mod replay;
mod serve;
mod user;
mod worker;

/// mimalloc instead of the system allocator: a request allocates a few
/// dozen small blocks (headers, the context's attributes, the response),
/// and glibc's malloc costs about 15 % of the server's own time on the
/// evaluation path (`cargo bench -p switchyard-server --bench requests`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the server: API, evaluation (OFREP), SDK streaming.
    Serve(serve::ServeArgs),
    /// Run a relay near your applications: sync environments from an
    /// upstream server (or relay) and serve OFREP, SDK configuration,
    /// streams and events to their SDKs (docs/relay.md).
    Relay(relay::RelayArgs),
    /// Run a worker of a cluster: aggregate partitions of the event stream
    /// (NATS JetStream) into PostgreSQL, sharing them with the other
    /// workers by lease (docs/deploy.md).
    Worker(worker::WorkerArgs),
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
    /// Analyse an experiment from per-variation sufficient statistics
    /// (docs/statistics.md) and print the results as JSON.
    Analyze {
        /// The analysis document; standard input when absent or `-`.
        file: Option<PathBuf>,
    },
    /// Create an admin API key directly in the config store (for a lost
    /// key or automation) and print its secret once.
    AdminKey(admin_key::AdminKeyArgs),
    /// Web UI users (`user add EMAIL`: create one in the config store).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Work with stored events (`events export`: raw events as NDJSON).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Recompute an experiment's aggregates from the retained event log on
    /// a running server (after a metric was added or changed), showing
    /// its progress.
    Replay(replay::ReplayArgs),
    /// Print the version.
    Version,
}

fn role_name(role: switchyard_store::Role) -> &'static str {
    match role {
        switchyard_store::Role::Viewer => "viewer",
        switchyard_store::Role::Editor => "editor",
        switchyard_store::Role::Admin => "admin",
    }
}

/// Prints a result; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
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
        Command::Analyze { file } => analyze::run(file.as_deref()),
        Command::Serve(args) => serve::run(args),
        Command::Relay(args) => relay::run(args),
        Command::Worker(args) => worker::run(args),
        Command::AdminKey(args) => admin_key::run(args),
        Command::Events(cmd) => events::run(cmd),
        Command::Replay(args) => replay::run(args),
        Command::User(cmd) => user::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
