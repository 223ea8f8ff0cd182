//! The storage lifecycle's background tasks: the tier mover (with its sweep)
//! and retention. Each runs a pass at start and then periodically; stopping
//! mid-pass is safe, since every step of a move or an erasure is restartable.

use super::tasks::Shutdown;
use crate::objects::Objects;
use crate::proctoring::{retention, tiering};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Time between passes of the tier mover.
const MOVE_EVERY: Duration = Duration::from_secs(15 * 60);
/// Time between retention passes.
const RETAIN_EVERY: Duration = Duration::from_secs(60 * 60);

/// Sweeps, then moves due objects to the cold tier, again and again.
pub async fn tier_mover(
    store: Arc<dyn Store>,
    objects: Objects,
    settings: tiering::Settings,
    stop: Shutdown,
) {
    loop {
        let pass = async {
            match tiering::sweep(&store, &objects).await {
                Ok(swept) if !swept.missing.is_empty() => tracing::error!(
                    missing = swept.missing.len(),
                    "objects recorded in the cold tier are missing from it; see the keys above"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("tier sweep failed: {e}"),
            }
            if let Err(e) =
                tiering::move_due(&store, &objects, settings, crate::auth::now_secs()).await
            {
                tracing::warn!("tier move failed: {e}");
            }
        };
        tokio::select! {
            () = pass => {}
            () = stop.clone().requested() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(MOVE_EVERY) => {}
            () = stop.clone().requested() => return,
        }
    }
}

/// Erases sessions past their host's retention, and finishes interrupted
/// erasures, again and again.
pub async fn retention(
    store: Arc<dyn Store>,
    objects: Objects,
    faces: Arc<crate::proctoring::identity::FaceIndex>,
    stop: Shutdown,
) {
    loop {
        let pass = async {
            match retention::expire(&store, &objects, crate::auth::now_secs()).await {
                Ok(erased) if !erased.is_empty() => {
                    for e in &erased {
                        faces.forget(&e.host);
                    }
                    tracing::info!(sessions = erased.len(), "erased sessions past retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("retention pass failed: {e}"),
            }
            if let Err(e) = retention::sweep_erased(&store, &objects).await {
                tracing::warn!("sweeping erased sessions' objects failed: {e}");
            }
        };
        tokio::select! {
            () = pass => {}
            () = stop.clone().requested() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(RETAIN_EVERY) => {}
            () = stop.clone().requested() => return,
        }
    }
}
