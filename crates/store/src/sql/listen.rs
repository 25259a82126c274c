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

/// How often a lost listener tries to connect again.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// Listens before returning, so that every change committed after the
/// store is open is seen.
///
/// A lost connection loses the notifications sent while it is down, so
/// the task does not let the driver reconnect quietly: it connects and
/// listens again itself and then announces a [`Change`] with `resync`,
/// on which subscribers re-read everything (documents carry their
/// revision, so a node converges to the newest whatever it missed).
pub(crate) async fn start(
    url: &str,
    node: String,
    changes: broadcast::Sender<Change>,
) -> Result<ListenerTask> {
    let mut listener = listen(url).await?;
    let url = url.to_string();
    let resync = move |changes: &broadcast::Sender<Change>| {
        let _ = changes.send(Change {
            project: String::new(),
            environment: None,
            revision: 0,
            api_keys: false,
            resync: true,
        });
    };
    let handle = tokio::spawn(async move {
        loop {
            // `try_recv`, not `recv`: `recv` reconnects by itself and goes
            // on as if nothing was missed; `try_recv` says `None` when the
            // connection was lost (and has connected and listened again).
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    match serde_json::from_str::<Payload>(notification.payload()) {
                        Ok(p) if p.node != node => {
                            let _ = changes.send(p.change);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable change notification"),
                    }
                }
                Ok(None) => {
                    tracing::warn!(
                        "change listener lost its connection and listens again; re-reading the configuration"
                    );
                    resync(&changes);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener lost its connection; changes of other nodes are not heard until it is back");
                    listener = loop {
                        tokio::time::sleep(RECONNECT_EVERY).await;
                        match listen(&url).await {
                            Ok(l) => break l,
                            Err(e) => {
                                tracing::debug!(error = %e, "change listener: still cannot connect")
                            }
                        }
                    };
                    tracing::info!("change listener connected again; re-reading the configuration");
                    resync(&changes);
                }
            }
        }
    });
    Ok(ListenerTask(handle))
}

async fn listen(url: &str) -> Result<PgListener> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
