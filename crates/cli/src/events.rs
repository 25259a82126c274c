//! `switchyard events export`: the stored events of one environment (and a
//! time range) as NDJSON, read straight from the data directory's event
//! log (read-only, so it works beside a running server; for a remote
//! server use `GET /api/v1/events/export`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use switchyard_events::ExportFilter;
use switchyard_events::export::{export_dir, parse_time_bound};

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Print stored events as NDJSON, one per line, in the order stored.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Directory of the embedded data (as for `serve`).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Project key.
    #[arg(long)]
    project: String,
    /// Environment key.
    #[arg(long)]
    environment: String,
    /// Only events at or after this time (RFC 3339 or ms since the epoch).
    #[arg(long)]
    from: Option<String>,
    /// Only events before this time (RFC 3339 or ms since the epoch).
    #[arg(long)]
    to: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn bound(flag: &str, v: Option<&str>) -> anyhow::Result<Option<i64>> {
    v.map(|t| {
        parse_time_bound(t).with_context(|| {
            format!("--{flag} {t:?} is neither an RFC 3339 time nor milliseconds since the epoch")
        })
    })
    .transpose()
}

pub fn run(cmd: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Export(args) = cmd;
    let filter = ExportFilter {
        project: args.project,
        environment: args.environment,
        from_ms: bound("from", args.from.as_deref())?,
        to_ms: bound("to", args.to.as_deref())?,
    };
    let dir = args.data_dir.join("events").join("log");
    anyhow::ensure!(
        dir.is_dir(),
        "no event log at {} (wrong --data-dir?)",
        dir.display()
    );
    let count = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let n = export_dir(&dir, &filter, &mut out)?;
            out.flush()?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match export_dir(&dir, &filter, &mut out).and_then(|n| out.flush().map(|()| n)) {
                Ok(n) => n,
                // `| head`: the reader has what it wanted.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    eprintln!("exported {count} events");
    Ok(())
}
