//! `/by-name/`: one symlink per client, `<Name> (<id>)` -> `../clients/<id>`, from the
//! client list (the Clients API, 100 a page). Names are made legal and distinct with
//! the same mapping as file names (`names::assign`). The list is served at any age and
//! refreshed behind the answer once older than `client_list_ttl`, and kept on disk, so
//! browsing `/by-name` costs no call except that refresh (docs/SEMANTICS.md).

use std::collections::HashSet;
use std::sync::Arc;

use super::error::{CoreError, CoreResult};
use super::state::{ByNameView, Key, State};
use super::{names, Core, Ino, Kind, BY_NAME_INO};
use crate::remote::{Client, ClientId, Remote};

/// Where the entry of client `c` points.
pub(super) fn target(c: ClientId) -> String {
    format!("../{}/{c}", super::CLIENTS_DIR)
}

fn build(st: &mut State, list: &[Client]) -> ByNameView {
    let raw: Vec<(String, String)> = list
        .iter()
        .map(|c| (format!("{} ({})", c.name.trim(), c.id), c.id.to_string()))
        .collect();
    let mut taken = HashSet::new();
    let assigned = names::assign(raw.iter().map(|(n, id)| (n.as_str(), id.as_str())), &mut taken);
    let mut view = ByNameView::default();
    for (c, name) in list.iter().zip(assigned) {
        let ino = st.ino_for(Key::NameLink(c.id), BY_NAME_INO, Kind::Symlink);
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.size = target(c.id).len() as u64;
        }
        view.by_name.insert(name.clone(), ino);
        view.entries.push((name, ino));
    }
    view
}

impl<R: Remote> Core<R> {
    /// `/by-name` from the client list (any age; see `client_list`).
    pub(super) async fn by_name_view(&self) -> CoreResult<Arc<ByNameView>> {
        let list = self.client_list().await?;
        let mut st = self.st();
        if let Some(v) = st.by_name.clone() {
            if st.client_list.as_ref().is_some_and(|(l, _)| Arc::ptr_eq(l, &list)) {
                return Ok(v);
            }
        }
        let v = Arc::new(build(&mut st, &list));
        st.by_name = Some(v.clone());
        Ok(v)
    }

    /// The target of a symlink (a `/by-name` entry); no call.
    pub fn readlink(&self, ino: Ino) -> CoreResult<String> {
        match self.key_of(ino)?.0 {
            Key::NameLink(c) => Ok(target(c)),
            _ => Err(CoreError::Invalid("not a symlink")),
        }
    }
}
