//! `switchyard admin-key`: create an admin API key directly in the config
//! store, for an operator who lost the one printed at first start (or wants
//! a key for automation). Needs access to the store, not to the API.

use std::path::PathBuf;

use anyhow::Context as _;
use switchyard_store::{ApiKeyInput, ApiKeyKind, Role};

#[derive(Debug, clap::Args)]
pub struct AdminKeyArgs {
    /// Directory of the embedded data (as for `serve`).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Config store URL (as for `serve`); default: SQLite in the data dir.
    #[arg(long, env = "SWITCHYARD_STORE_URL")]
    store_url: Option<String>,
    /// Name of the key, shown in listings and the audit log.
    #[arg(long, default_value = "operator")]
    name: String,
    /// Role: viewer, editor or admin.
    #[arg(long, default_value = "admin")]
    role: String,
    /// Limit the key to one project.
    #[arg(long)]
    project: Option<String>,
}

/// The store URL given, or the data dir's SQLite store, which must exist.
pub fn store_url(data_dir: &std::path::Path, given: Option<&str>) -> anyhow::Result<String> {
    Ok(match given {
        Some(u) => u.to_string(),
        None => {
            let db = data_dir.join("config.db");
            anyhow::ensure!(
                db.exists(),
                "no config store at {} (start `switchyard serve` once, or pass --store-url)",
                db.display()
            );
            format!("sqlite://{}", db.display())
        }
    })
}

pub fn run(args: AdminKeyArgs) -> anyhow::Result<()> {
    let role = match args.role.as_str() {
        "viewer" => Role::Viewer,
        "editor" => Role::Editor,
        "admin" => Role::Admin,
        other => anyhow::bail!("unknown --role {other:?}: use viewer, editor or admin"),
    };
    let store_url = store_url(&args.data_dir, args.store_url.as_deref())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let store = switchyard_store::open(&store_url)
                .await
                .context("cannot open the config store")?;
            let created = store
                .create_api_key(
                    "system:cli",
                    ApiKeyInput {
                        name: args.name,
                        kind: ApiKeyKind::Admin(role),
                        project: args.project,
                        environment: None,
                    },
                )
                .await
                .context("cannot create the key")?;
            crate::print_stdout(&created.secret)
        })
}
