//! `switchyard analyze`: results from sufficient statistics.

use std::io::Read;
use std::path::Path;

use anyhow::Context as _;

pub fn run(file: Option<&Path>) -> anyhow::Result<()> {
    let input = match file {
        Some(p) if p != Path::new("-") => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read standard input")?;
            s
        }
    };
    let result = switchyard_stats::analyze_document(&input)?;
    crate::print_stdout(&serde_json::to_string_pretty(&result)?)
}
