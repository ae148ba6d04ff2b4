//! How a [`SnapshotStore`] changes what it holds: durable manifest updates, committing new
//! snapshots, garbage collection of what no chain or lease keeps, the scratch space of
//! incoming transfers, and installing a staged chain.

use super::*;

impl SnapshotStore {
    /// Replaces the manifest durably (temp file, fsync, rename, directory fsync) after
    /// applying `change` to a copy; the in-memory manifest changes only on success.
    pub(crate) fn update_manifest(
        &self,
        m: &mut Manifest,
        change: impl FnOnce(&mut Manifest),
    ) -> Result<()> {
        let mut next = m.clone();
        change(&mut next);
        next.check().map_err(Error::Invalid)?;
        let fs = &*self.shared.fs;
        let dir = &self.shared.dir;
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let bytes = next.to_bytes();
        self.step("manifest: write temp")?;
        {
            let f = fs.create(&tmp).at(&tmp)?;
            f.write_at(&bytes, 0).at(&tmp)?;
            self.step("manifest: fsync temp")?;
            f.sync_data().at(&tmp)?;
        }
        self.step("manifest: rename")?;
        let path = dir.join(MANIFEST_FILE);
        fs.rename(&tmp, &path).at(&path)?;
        *m = next;
        self.step("manifest: fsync dir")?;
        self.sync_dir()?;
        Ok(())
    }

    /// Adds durable files (already in place under their final names) to the manifest and
    /// moves the head as `head` says. The head is chosen under the manifest's lock, against
    /// the head current at that moment (a concurrent install may have moved it).
    pub(crate) fn commit_snapshots(&self, added: Vec<SnapshotInfo>, head: NewHead) -> Result<()> {
        let mut m = self.shared.manifest.lock();
        let head = match head {
            NewHead::Set(id) => Some(id),
            NewHead::IfNotOlder(id) => {
                let index = added.iter().find(|s| s.id == id).map(|s| s.index);
                match (m.head.and_then(|h| m.get(h)), index) {
                    (Some(cur), Some(index)) if cur.index > index => None,
                    _ => Some(id),
                }
            }
        };
        self.update_manifest(&mut m, |m| {
            for s in added {
                if m.get(s.id).is_none() {
                    m.snapshots.push(s);
                }
            }
            if head.is_some() {
                m.head = head;
            }
        })?;
        let len = m.head.and_then(|h| m.chain(h).ok()).map_or(0, |c| c.len());
        metrics::gauge!(raft_metrics::snapshot::CHAIN_LENGTH).set(len as f64);
        Ok(())
    }

    /// Removes every snapshot that is neither in the current chain nor leased (nor an
    /// ancestor of a leased one). The manifest is updated first, then the files deleted.
    /// Returns the removed snapshots.
    pub fn gc(&self) -> Result<Vec<SnapshotId>> {
        let mut m = self.shared.manifest.lock();
        let mut keep: HashSet<SnapshotId> = HashSet::new();
        let mut roots: Vec<SnapshotId> = self.shared.leases.counts.lock().keys().copied().collect();
        roots.extend(m.head);
        for r in roots {
            let mut cur = Some(r);
            while let Some(id) = cur {
                if !keep.insert(id) {
                    break;
                }
                cur = m.get(id).and_then(|s| s.parent);
            }
        }
        let removed: Vec<SnapshotId> = m
            .snapshots
            .iter()
            .map(|s| s.id)
            .filter(|id| !keep.contains(id))
            .collect();
        if removed.is_empty() {
            return Ok(removed);
        }
        self.update_manifest(&mut m, |m| m.snapshots.retain(|s| keep.contains(&s.id)))?;
        for id in &removed {
            self.step("gc: delete file")?;
            let p = self.path_of(*id);
            match self.shared.fs.remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        self.sync_dir()?;
        metrics::counter!(raft_metrics::snapshot::GC_REMOVED).increment(removed.len() as u64);
        tracing::info!(removed = removed.len(), "snapshot gc");
        Ok(removed)
    }

    /// Keys of the incoming transfers kept under `tmp/` (resumable after a restart).
    pub fn incoming_transfers(&self) -> Result<Vec<String>> {
        let tmp = self.shared.dir.join(TMP_DIR);
        let mut out = Vec::new();
        for entry in self.shared.fs.read_dir(&tmp).at(&tmp)? {
            if let Some(key) = entry.name.strip_prefix(INCOMING_PREFIX) {
                out.push(key.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the data of every incoming transfer except the one named `keep` (e.g. when
    /// a new transfer starts, abandoned ones from earlier leaders are dropped). Returns how
    /// many were removed. Must not race with a live [`IncomingTransfer`](crate::IncomingTransfer)
    /// under another key.
    pub fn remove_incoming(&self, keep: Option<&str>) -> Result<usize> {
        let keep = keep.map(sanitize);
        let mut n = 0;
        for key in self.incoming_transfers()? {
            if Some(&key) == keep.as_ref() {
                continue;
            }
            let p = self
                .shared
                .dir
                .join(TMP_DIR)
                .join(format!("{INCOMING_PREFIX}{key}"));
            self.shared.fs.remove_dir_all(&p).at(&p)?;
            n += 1;
        }
        Ok(n)
    }

    /// Makes a staged, verified chain current: moves its files into place (skipping those
    /// already present), fsyncs the directory, then names them in the manifest with the
    /// chain's tip as head. A crash before the manifest is replaced leaves the old chain
    /// current (the moved files are removed as leftovers on open); after it, the new one.
    pub(crate) fn install_staged(&self, staged: Vec<(PathBuf, SnapshotInfo)>) -> Result<Chain> {
        let chain = Chain::new(staged.iter().map(|(_, i)| i.clone()).collect())?;
        let mut added = Vec::new();
        {
            let m = self.shared.manifest.lock();
            for (path, info) in &staged {
                if let Some(existing) = m.get(info.id) {
                    if existing.checksum != info.checksum || existing.size != info.size {
                        return Err(Error::Invalid(format!(
                            "snapshot {} already exists with different contents",
                            info.id
                        )));
                    }
                    continue;
                }
                self.step("install: move file")?;
                let dst = self.path_of(info.id);
                self.shared.fs.rename(path, &dst).at(&dst)?;
                added.push(info.clone());
            }
        }
        self.step("install: fsync dir")?;
        self.sync_dir()?;
        self.commit_snapshots(added, NewHead::Set(chain.tip().id))?;
        tracing::info!(tip = %chain.tip().id, index = chain.tip().index, "snapshot chain installed");
        Ok(chain)
    }
}
