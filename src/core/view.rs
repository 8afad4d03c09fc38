//! A client's directory views: which name in which directory stands for which inode,
//! computed from the folders, the listing and the files created through the mount.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::error::CoreResult;
use super::state::{ms_to_time, DirKey, DirView, Key, State};
use super::{names, Core, Ino, Kind, CLIENTS_INO};
use crate::remote::{ClientId, Folder, Remote, RemoteFile};

/// Compute a client's directories from its listing, the folders and local files.
pub(super) fn build_view(st: &mut State, c: ClientId) -> HashMap<DirKey, DirView> {
    let client_ino = st.ino_for(Key::Client(c), CLIENTS_INO, Kind::Dir);
    let folders: Vec<Folder> = st.folders.as_ref().map(|(f, _)| f.clone()).unwrap_or_default();
    let mut files: Vec<RemoteFile> = st
        .clients
        .get(&c)
        .and_then(|cs| cs.listing.as_ref())
        .map(|l| l.files.clone())
        .unwrap_or_default();
    // Files the mount replaced but could not delete yet are gone as far as users see.
    files.retain(|f| !st.owed_deletes.contains_key(&f.id));
    files.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    let files: Vec<&RemoteFile> = files.iter().collect();
    let listed: HashSet<&str> = folders.iter().map(|f| f.id.as_str()).collect();
    let mut unlisted: Vec<String> = files
        .iter()
        .filter_map(|f| f.folder_id.clone())
        .filter(|id| !listed.contains(id.as_str()))
        .collect();
    unlisted.sort();
    unlisted.dedup();

    let mut views: HashMap<DirKey, DirView> = HashMap::new();
    let mut top = DirView::default();
    let mut taken: HashSet<String> = HashSet::new();
    // Folders first: directories take their names before files do.
    let folder_names: Vec<(String, String)> = folders
        .iter()
        .map(|f| (f.name.clone(), f.id.clone()))
        .chain(unlisted.iter().map(|id| (format!("_folder-{id}"), id.clone())))
        .collect();
    let assigned = names::assign(folder_names.iter().map(|(n, id)| (n.as_str(), id.as_str())), &mut taken);
    for ((_, id), name) in folder_names.iter().zip(assigned) {
        let ino = st.ino_for(Key::Folder(c, id.clone()), client_ino, Kind::Dir);
        top.push(name, ino);
        views.insert(DirKey::Folder(id.clone()), DirView::default());
    }
    // Local files keep the exact name they were created with.
    let mut locals: Vec<(u64, String, Ino)> = st
        .locals
        .iter()
        .filter(|(_, (lc, _, _))| *lc == c)
        .map(|(l, (_, n, i))| (*l, n.clone(), *i))
        .collect();
    locals.sort();
    for (_, name, ino) in locals {
        if taken.insert(name.clone()) {
            top.push(name, ino);
        }
    }
    let top_files: Vec<&RemoteFile> = files.iter().copied().filter(|f| f.folder_id.is_none()).collect();
    let assigned = assign_files(st, &top_files, &mut taken);
    for (f, name) in top_files.into_iter().zip(assigned) {
        let ino = file_node(st, f, client_ino);
        top.push(name, ino);
    }
    for folder_id in folders.iter().map(|f| &f.id).chain(unlisted.iter()) {
        let dir_ino = st.ino_for(Key::Folder(c, folder_id.clone()), client_ino, Kind::Dir);
        let in_dir: Vec<&RemoteFile> = files
            .iter()
            .copied()
            .filter(|f| f.folder_id.as_ref() == Some(folder_id))
            .collect();
        let mut taken = HashSet::new();
        let assigned = assign_files(st, &in_dir, &mut taken);
        let mut dv = DirView::default();
        for (f, name) in in_dir.into_iter().zip(assigned) {
            let ino = file_node(st, f, dir_ino);
            dv.push(name, ino);
        }
        views.insert(DirKey::Folder(folder_id.clone()), dv);
    }
    views.insert(DirKey::Top, top);
    views
}

/// Names for one directory's files, in the order of `files`. A file keeps the name it
/// was shown under earlier in this mount (`State::shown`): the user's own writes and
/// deletes never move a twin's name. The others follow the rule, a pure function of the
/// listing: of files sharing a name, the newest (`DateCreated`, then id) shows it plain
/// and each other one as `stem (tag).ext` (`names::assign`). Newest, not oldest, so
/// that overwriting a twin through the mount keeps the plain name on the new bytes,
/// across remounts too.
fn assign_files(st: &mut State, files: &[&RemoteFile], taken: &mut HashSet<String>) -> Vec<String> {
    let mut out: Vec<Option<String>> = files
        .iter()
        .map(|f| st.shown.get(&f.id).filter(|n| taken.insert((*n).clone())).cloned())
        .collect();
    let mut rest: Vec<usize> = (0..files.len()).filter(|i| out[*i].is_none()).collect();
    rest.sort_by(|a, b| (files[*b].created_ms, &files[*b].id).cmp(&(files[*a].created_ms, &files[*a].id)));
    let assigned = names::assign(
        rest.iter().map(|i| (files[*i].name.as_str(), files[*i].id.as_str())),
        taken,
    );
    for (i, name) in rest.into_iter().zip(assigned) {
        out[i] = Some(name);
    }
    files
        .iter()
        .zip(out)
        .map(|(f, name)| {
            let name = name.unwrap_or_default();
            st.shown.insert(f.id.clone(), name.clone());
            name
        })
        .collect()
}

pub(super) fn file_node(st: &mut State, f: &RemoteFile, parent: Ino) -> Ino {
    let ino = st.ino_for(Key::File(f.id.clone()), parent, Kind::File);
    let mtime = st
        .mtimes
        .get(&f.id)
        .copied()
        .unwrap_or_else(|| ms_to_time(f.created_ms));
    if let Some(n) = st.nodes.get_mut(&ino) {
        n.size = f.size;
        n.mtime = mtime;
        n.parent = parent;
    }
    ino
}

impl<R: Remote> Core<R> {
    /// The client's directory views, fetching folders and files if stale.
    pub(super) async fn view(&self, c: ClientId) -> CoreResult<Arc<HashMap<DirKey, DirView>>> {
        self.ensure_folders().await?;
        self.ensure_listing(c).await?;
        let mut st = self.st();
        if let Some(v) = st.clients.get(&c).and_then(|cs| cs.view.clone()) {
            return Ok(v);
        }
        let v = Arc::new(build_view(&mut st, c));
        st.client(c).view = Some(v.clone());
        Ok(v)
    }

    /// The view if its inputs are in memory (any age): no call.
    pub(super) fn cached_view(&self, c: ClientId) -> Option<Arc<HashMap<DirKey, DirView>>> {
        let mut st = self.st();
        if st.folders.is_none() || st.clients.get(&c).and_then(|cs| cs.listing.as_ref()).is_none() {
            return None;
        }
        if let Some(v) = st.clients.get(&c).and_then(|cs| cs.view.clone()) {
            return Some(v);
        }
        let v = Arc::new(build_view(&mut st, c));
        st.client(c).view = Some(v.clone());
        Some(v)
    }
}
