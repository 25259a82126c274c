//! PostgreSQL `LISTEN`: other nodes' changes, forwarded to local subscribers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::CHANNEL;
use crate::error::Result;
use crate::types::Change;

#[derive(Serialize, Deserialize)]
struct Payload {
    node: String,
    #[serde(flatten)]
    change: Change,
}

pub(crate) fn encode(node: &str, change: &Change) -> Result<String> {
    Ok(serde_json::to_string(&Payload {
        node: node.to_string(),
        change: change.clone(),
    })?)
}

/// The listening task; aborted on drop.
#[derive(Debug)]
pub(crate) struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens before returning, so that every change committed after the
/// store is open is seen.
pub(crate) async fn start(
    url: &str,
    node: String,
    changes: broadcast::Sender<Change>,
) -> Result<ListenerTask> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    let handle = tokio::spawn(async move {
        loop {
            // `recv` reconnects by itself after a lost connection (and
            // listens again); notifications sent meanwhile are lost, so a
            // consumer that must not miss one re-reads documents on lag.
            match listener.recv().await {
                Ok(notification) => match serde_json::from_str::<Payload>(notification.payload()) {
                    Ok(p) if p.node != node => {
                        let _ = changes.send(p.change);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable change notification"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(ListenerTask(handle))
}
