//! `switchyard replay`: asks a running server to recompute one experiment's
//! aggregates from its retained event log (`POST .../replay`), then follows
//! the progress (`GET .../replay`) until it is done. Used after a metric
//! was added to or changed on a running experiment.
//!
//! Progress goes to standard error: one line updated in place on a
//! terminal, a line per tenth otherwise; the final progress document goes
//! to standard output as JSON.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Base URL of the server (plain HTTP; for HTTPS use the API directly).
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin API key with the editor role on the project.
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    key: String,
    /// Project key.
    #[arg(long)]
    project: String,
    /// Environment key.
    #[arg(long = "env", alias = "environment")]
    environment: String,
    /// Experiment key.
    #[arg(long)]
    experiment: String,
    /// Give up following the progress after this many seconds (the
    /// replay itself goes on in the server).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

fn error_text(status: reqwest::StatusCode, body: &Value) -> String {
    let m = body["error"]["message"].as_str().unwrap_or("");
    format!("the server answered {status}: {m}")
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(replay(args))
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let url = format!(
        "{}/api/v1/projects/{}/environments/{}/experiments/{}/replay",
        args.url.trim_end_matches('/'),
        args.project,
        args.environment,
        args.experiment
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let r = http
        .post(&url)
        .bearer_auth(&args.key)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::ACCEPTED {
        bail!("{}", error_text(status, &body));
    }
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut shown_tenth = -1i64;
    let mut p = body;
    loop {
        let fraction = p["fraction"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        let read = p["events_read"].as_u64().unwrap_or(0);
        let total = p["events_total"].as_u64().unwrap_or(0);
        let state = p["state"].as_str().unwrap_or("?").to_string();
        let line = format!(
            "replay {}: {state} {:5.1} % [{:<30}] {read} / ~{total} events",
            args.experiment,
            fraction * 100.0,
            "#".repeat((fraction * 30.0) as usize),
        );
        let tenth = (fraction * 10.0) as i64;
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r{line}");
        } else if tenth != shown_tenth || state != "running" {
            let _ = writeln!(err, "{line}");
        }
        shown_tenth = tenth;
        if state != "running" {
            if tty {
                let _ = writeln!(err);
            }
            drop(err);
            crate::print_stdout(&serde_json::to_string_pretty(&p)?)?;
            if state == "done" {
                return Ok(());
            }
            bail!(
                "the replay failed: {}",
                p["error"].as_str().unwrap_or("no reason given")
            );
        }
        drop(err);
        if started.elapsed() > Duration::from_secs(args.timeout) {
            bail!(
                "still running after {} s; follow it with GET {url}",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = http.get(&url).bearer_auth(&args.key).send().await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}", error_text(status, &body));
        }
        p = body;
    }
}
