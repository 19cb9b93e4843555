//! Retention in the repository: entries past `keep_last` or older than `max_age` are deleted,
//! never the newest. Their manifests go first, so an entry disappears from the listing at once
//! and whole; then every object no remaining manifest names is deleted. Uploads and pruning of a
//! repository run one at a time in the sidecar that writes it (one writer per prefix), so an
//! object an upload has just found in place cannot be deleted before its manifest names it.
//! Blocking; run on a blocking thread.

use std::collections::HashSet;
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
/// `now_unix - max_age`), never the newest, and the objects only they named.
pub fn prune(
    store: &Store,
    keep_last: usize,
    max_age: Option<Duration>,
    now_unix: f64,
) -> Result<Pruned, String> {
    let ids = super::download::list(store)?;
    let count = ids.len();
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        let manifest = read_manifest(store, &id)?;
        let from_newest = count - 1 - index;
        let too_many = keep_last > 0 && from_newest >= keep_last;
        let too_old = max_age.is_some_and(|age| {
            manifest
                .as_ref()
                .is_some_and(|m| now_unix - m.created_unix() > age.as_secs_f64())
        });
        match (from_newest > 0 && (too_many || too_old), manifest) {
            (true, _) => doomed.push(id),
            (false, Some(manifest)) => kept.push(manifest),
            // A manifest that cannot be read cannot say which objects it needs: nothing is
            // deleted until it is dealt with.
            (false, None) => {
                return Err(format!("entry {id}: unreadable manifest; nothing pruned"));
            }
        }
    }
    let mut pruned = Pruned::default();
    if doomed.is_empty() {
        return Ok(pruned);
    }
    for id in &doomed {
        store.delete(&entry_key(&store.prefix, id))?;
        pruned.entries.push(id.clone());
    }
    let named: HashSet<String> = kept
        .iter()
        .flat_map(|listed| listed.object_keys(&store.prefix))
        .collect();
    for key in store.list(&format!("{}objects/", store.prefix))? {
        if !named.contains(&key) {
            store.delete(&key)?;
            pruned.objects += 1;
        }
    }
    Ok(pruned)
}

fn read_manifest(store: &Store, id: &str) -> Result<Option<Listed>, String> {
    Ok(store
        .get(&entry_key(&store.prefix, id))?
        .and_then(|bytes| Listed::parse(&bytes).ok()))
}
