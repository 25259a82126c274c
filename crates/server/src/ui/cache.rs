//! The flags of a project, kept in memory for the pages that show them.
//!
//! Reading and decoding every flag of a large project costs tens of
//! milliseconds on SQLite (1,000 flags: about 30 ms), more than a page may
//! take. Each use first reads the project's revision (one small row), and
//! the cached flags serve only while it is the revision they were read at:
//! every change in the project raises it, on every node (it is in the
//! store), so a page never shows flags older than the store's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchyard_store::{ConfigStore, FlagDefinition, Result};

/// At most this many flags are held, over all projects; past it, the
/// other projects' entries are dropped.
pub const MAX_CACHED_FLAGS: usize = 50_000;

type Tag = (time::OffsetDateTime, u64);
type Flags = Arc<Vec<FlagDefinition>>;

#[derive(Debug, Default)]
pub struct FlagCache {
    entries: Mutex<HashMap<String, (Tag, Flags)>>,
}

impl FlagCache {
    /// The flags of `project` as the store holds them now.
    pub async fn flags(
        &self,
        store: &dyn ConfigStore,
        project: &str,
    ) -> Result<Arc<Vec<FlagDefinition>>> {
        let tag = store.project_revision(project).await?;
        if let Some(flags) = self.lookup(project, tag) {
            return Ok(flags);
        }
        let flags = Arc::new(store.list_flags(project).await?);
        self.keep(project, tag, flags.clone());
        Ok(flags)
    }

    fn lookup(&self, project: &str, tag: Tag) -> Option<Arc<Vec<FlagDefinition>>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(project)
            .filter(|(t, _)| *t == tag)
            .map(|(_, f)| f.clone())
    }

    fn keep(&self, project: &str, tag: Tag, flags: Arc<Vec<FlagDefinition>>) {
        if flags.len() > MAX_CACHED_FLAGS {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A slower reader must not replace a newer entry with older flags.
        if let Some((t, _)) = entries.get(project)
            && t.0 == tag.0
            && t.1 > tag.1
        {
            return;
        }
        let held: usize = entries
            .iter()
            .filter(|(p, _)| p.as_str() != project)
            .map(|(_, (_, f))| f.len())
            .sum();
        if held + flags.len() > MAX_CACHED_FLAGS {
            entries.clear();
        }
        entries.insert(project.to_string(), (tag, flags));
    }
}
