//! `switchyard user add`: create a web UI user directly in the config
//! store (the first admin, or anyone, without the API). The password comes
//! from standard input (`--password-stdin`, its first line) or is
//! generated and printed once; only its Argon2id hash is stored.

use std::path::PathBuf;

use anyhow::Context as _;
use switchyard_store::{Role, UserInput};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; prints the generated password, unless one is read
    /// from standard input.
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The user's email (they sign in with it).
    email: String,
    /// Role admin over every project (same as `--role admin`).
    #[arg(long, conflicts_with = "role")]
    admin: bool,
    /// Role: viewer, editor or admin.
    #[arg(long, default_value = "viewer")]
    role: String,
    /// Limit the user's role to one project.
    #[arg(long)]
    project: Option<String>,
    /// Read the password from the first line of standard input instead of
    /// generating one.
    #[arg(long)]
    password_stdin: bool,
    /// Directory of the embedded data (as for `serve`).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Config store URL (as for `serve`); default: SQLite in the data dir.
    #[arg(long, env = "SWITCHYARD_STORE_URL")]
    store_url: Option<String>,
}

pub fn run(cmd: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Add(args) = cmd;
    let role = match (args.admin, args.role.as_str()) {
        (true, _) | (_, "admin") => Role::Admin,
        (_, "viewer") => Role::Viewer,
        (_, "editor") => Role::Editor,
        (_, other) => anyhow::bail!("unknown --role {other:?}: use viewer, editor or admin"),
    };
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        (line.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        (switchyard_store::password::generate()?, true)
    };
    let store_url = crate::admin_key::store_url(&args.data_dir, args.store_url.as_deref())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let store = switchyard_store::open(&store_url)
                .await
                .context("cannot open the config store")?;
            let user = store
                .create_user(
                    "system:cli",
                    UserInput {
                        email: args.email,
                        password: password.clone(),
                        role,
                        project: args.project,
                    },
                )
                .await
                .context("cannot create the user")?;
            eprintln!("created user {} ({})", user.email, crate::role_name(role));
            if generated {
                crate::print_stdout(&password)?;
            }
            Ok(())
        })
}
