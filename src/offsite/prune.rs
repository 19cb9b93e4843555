//! Retention in the repository: entries past `keep_last` or older than `max_age` are deleted,
//! never the newest. Their manifests go first, so an entry disappears from the listing at once
//! and whole; then every object no remaining manifest names is deleted. Uploads and pruning of a
//! repository run one at a time in the sidecar that writes it (one writer per prefix), so an
//! object an upload has just found in place cannot be deleted before its manifest names it.
//! Blocking; run on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::entry_key;
use super::listed::Listed;
use super::store::Store;

/// What a prune deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub entries: Vec<String>,
    pub objects: usize,
}

/// Deletes entries past `keep_last` (0: no limit) or older than `max_age` (created before
/// `now_unix - max_age`), never the newest, and the objects no remaining entry names that were
/// written more than `grace` ago: an upload running elsewhere meanwhile (another process on the
/// same prefix, a sidecar handing over during an upgrade) may be about to name a fresh one, and
/// re-checks the older ones it found in place after writing its manifest ([`super::upload`]).
///
/// With `keep_last` alone and no more entries than it, the listing decides and no manifest is
/// read. Otherwise every entry's manifest is needed (its time, the objects it names); manifests
/// never change once written, so each is fetched once per process and remembered.
pub fn prune(
    store: &Store,
    keep_last: usize,
    max_age: Option<Duration>,
    grace: Duration,
    now_unix: f64,
) -> Result<Pruned, String> {
    let ids = super::download::list(store)?;
    let count = ids.len();
    let mut pruned = Pruned::default();
    if max_age.is_none() && (keep_last == 0 || count <= keep_last) {
        return Ok(pruned);
    }
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        let from_newest = count - 1 - index;
        let too_many = keep_last > 0 && from_newest >= keep_last;
        if from_newest > 0 && too_many {
            doomed.push(id);
            continue;
        }
        // Gone since the listing (another process's retention): nothing to keep or delete.
        let Some(known) = remembered(store, &id)? else {
            continue;
        };
        let too_old = max_age.is_some_and(|age| now_unix - known.created_unix > age.as_secs_f64());
        match from_newest > 0 && too_old {
            true => doomed.push(id),
            false => kept.push(known),
        }
    }
    if doomed.is_empty() {
        return Ok(pruned);
    }
    let manifests: Vec<String> = doomed
        .iter()
        .map(|id| entry_key(&store.prefix, id))
        .collect();
    store.delete_many(&manifests)?;
    for id in &doomed {
        forget(store, id);
    }
    pruned.entries = doomed;
    let named: HashSet<&String> = kept.iter().flat_map(|k| k.object_keys.iter()).collect();
    let written_before = now_unix - grace.as_secs_f64();
    let unnamed: Vec<String> = store
        .list_objects(&format!("{}objects/", store.prefix))?
        .into_iter()
        .filter(|o| !named.contains(&o.key))
        .filter(|o| o.last_modified_unix.is_none_or(|t| t <= written_before))
        .map(|o| o.key)
        .collect();
    store.delete_many(&unnamed)?;
    pruned.objects = unnamed.len();
    Ok(pruned)
}

/// What retention needs of an entry: its time and the keys of the objects it names.
#[derive(Debug)]
struct Known {
    created_unix: f64,
    object_keys: Vec<String>,
}

/// Entries by repository URL and id.
type KnownEntries = HashMap<(String, String), Arc<Known>>;

/// Entries read by this process.
static KNOWN: std::sync::Mutex<Option<KnownEntries>> = std::sync::Mutex::new(None);

/// Entry `id` as remembered, else read; None if it is gone. A manifest that cannot be read
/// cannot say which objects it needs: nothing is deleted until it is dealt with.
fn remembered(store: &Store, id: &str) -> Result<Option<Arc<Known>>, String> {
    let slot = (store.url.clone(), id.to_string());
    if let Some(known) = KNOWN.lock().unwrap().get_or_insert_default().get(&slot) {
        return Ok(Some(known.clone()));
    }
    let Some(bytes) = store.get(&entry_key(&store.prefix, id))? else {
        return Ok(None);
    };
    let listed = Listed::parse(&bytes)
        .map_err(|e| format!("entry {id}: unreadable manifest ({e}); nothing pruned"))?;
    let known = Arc::new(Known {
        created_unix: listed.created_unix(),
        object_keys: listed.object_keys(&store.prefix).collect(),
    });
    KNOWN
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert(slot, known.clone());
    Ok(Some(known))
}

fn forget(store: &Store, id: &str) {
    if let Some(known) = KNOWN.lock().unwrap().as_mut() {
        known.remove(&(store.url.clone(), id.to_string()));
    }
}
