//! What a window leaves to the background once traffic flows again: a new copy is verified
//! (with `verify_after`) and uploaded off-site (with `[backup.copy.offsite]`). The upload also
//! runs at start, for entries a previous run left behind.

use std::sync::Arc;

use crate::shared::Shared;

/// A copy wrote entry `id`: verify it if asked, and upload what is not yet off-site.
pub fn entry_written(shared: &Arc<Shared>, id: String, verify: bool) {
    if verify {
        crate::verify::background::verify_new(shared, id);
    }
    upload_offsite(shared);
}

/// With `[backup.copy.offsite]`, uploads the entries not yet off-site in the background.
pub fn upload_offsite(shared: &Arc<Shared>) {
    let config = shared.config();
    let Some(copy) = config.backup.copy.as_ref() else {
        return;
    };
    let Some(offsite) = copy.offsite.clone() else {
        return;
    };
    let retry = crate::offsite::background::Retry {
        initial: config.backup.retry_initial,
        max: config.backup.retry_max,
    };
    let (shared, catalog) = (shared.clone(), copy.catalog.clone());
    shared.clone().uploads.spawn(async move {
        let uploaded = crate::offsite::background::upload_pending(
            &shared.uploads,
            &shared.metrics,
            &catalog,
            &offsite,
            retry,
        )
        .await;
        // verify_after: the newest entry uploaded, as it is in the repository.
        if let (true, Some(id)) = (offsite.verify_after, uploaded.last())
            && !shared.uploads.stop_token().is_cancelled()
        {
            crate::verify::offsite::verify_and_count(&shared, &offsite, id).await;
        }
    });
}
