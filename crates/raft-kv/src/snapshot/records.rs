//! Reading a capture's records: the live data and the pre-images of each chunk of keys (a
//! full capture) or the keys of the dirty lists (a delta), then the history and metadata.

use super::*;

impl Iterator for CaptureRecords {
    type Item = Result<SnapshotRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buf.pop_front() {
                return Some(Ok(r));
            }
            if self.failed {
                return None;
            }
            if self.history.is_some() {
                if let Err(e) = self.fill_history() {
                    self.failed = true;
                    return Some(Err(e));
                }
                continue;
            }
            if !self.internal.is_empty() {
                self.buf.extend(self.internal.drain(..));
                continue;
            }
            if self.data_done {
                if self.tail.is_empty() {
                    return None;
                }
                return Some(Ok(self.tail.remove(0)));
            }
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

impl CaptureRecords {
    /// Reads the next up to [`CHUNK`] history events. No lock: apply only adds events above
    /// the capture's revision, and physical compaction waits at the capture's pin.
    fn fill_history(&mut self) -> Result<()> {
        let Some(from) = self.history.take() else {
            return Ok(());
        };
        let mut last = None;
        for item in self
            .shared
            .tree
            .range(from..self.history_end.clone())
            .take(CHUNK)
        {
            let (k, v) = item?;
            self.buf.push_back(SnapshotRecord::Put {
                key: Bytes::copy_from_slice(&k),
                value: Bytes::copy_from_slice(&v),
            });
            last = Some(k);
        }
        if self.buf.len() == CHUNK
            && let Some(k) = last
        {
            // The smallest key after `k`.
            let mut next = k.to_vec();
            next.push(0);
            self.history = Some(next);
        }
        Ok(())
    }

    /// Reads the next chunk (no lock apply waits for: see the module documentation).
    fn fill(&mut self) -> Result<()> {
        match self.kind {
            CaptureKind::Full => self.fill_full()?,
            CaptureKind::Delta => self.fill_delta()?,
        }
        // Published only after the chunk's data and pre-images were both read.
        let progress = match &self.cursor {
            _ if self.data_done => Progress::Done,
            Some(c) => Progress::After(c.clone()),
            None => return Ok(()),
        };
        let passed = self.shared.cow.lock().advance(progress);
        drop(passed);
        Ok(())
    }

    /// The pre-images of the user keys in `(cursor, upto]` (`None`: to the end), in key
    /// order: the in-memory ones, and the sled ones when the capture has any (a key has its
    /// pre-image in one place only).
    fn pre_images(&self, upto: Option<&[u8]>) -> Result<Taken> {
        let (mut taken, any_spilled) = self
            .shared
            .cow
            .lock()
            .pre_images(self.cursor.as_deref(), upto);
        if any_spilled {
            let number = self.cap.number;
            let lo = match &self.cursor {
                Some(k) => Bound::Excluded(cow_key(number, k)),
                None => Bound::Included(numbered(COW, number)),
            };
            let hi = match upto {
                Some(k) => Bound::Included(cow_key(number, k)),
                None => Bound::Excluded(numbered(COW, number + 1)),
            };
            let before = taken.len();
            for item in self.shared.tree.range((lo, hi)) {
                let (k, v) = item?;
                taken.push((k[9..].to_vec(), decode_pre_image(&v)?));
            }
            if taken.len() > before && before > 0 {
                taken.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            }
        }
        Ok(taken)
    }

    /// The record of `user_key` from its pre-image: `None` when the key was absent at the
    /// capture point.
    fn from_pre_image(user_key: &[u8], pre: PreImage) -> Option<SnapshotRecord> {
        pre.map(|raw| SnapshotRecord::Put {
            key: Bytes::from(prefixed(DATA, user_key)),
            value: Bytes::copy_from_slice(&raw),
        })
    }

    /// The next up to [`CHUNK`] data keys, then the pre-images of the same key interval.
    fn fill_full(&mut self) -> Result<()> {
        let tree = &self.shared.tree;
        let lo = match &self.cursor {
            Some(k) => Bound::Excluded(prefixed(DATA, k)),
            None => Bound::Included(vec![DATA]),
        };
        let mut data = Vec::with_capacity(CHUNK);
        for item in tree
            .range((lo, Bound::Excluded(vec![DATA + 1])))
            .take(CHUNK)
        {
            data.push(item?);
        }
        let last = (data.len() == CHUNK).then(|| data[CHUNK - 1].0[1..].to_vec());
        let pre = self.pre_images(last.as_deref())?;
        // Merge by user key; a pre-image wins over the live data.
        let mut data = data.into_iter().peekable();
        let mut pre = pre.into_iter().peekable();
        loop {
            let order = match (
                data.peek().map(|(k, _)| &k[1..]),
                pre.peek().map(|(k, _)| k.as_slice()),
            ) {
                (None, None) => break,
                (Some(d), Some(c)) => c.cmp(d),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
            };
            if order == Ordering::Greater {
                let (k, v) = data.next().expect("peeked");
                self.buf.push_back(SnapshotRecord::Put {
                    key: Bytes::copy_from_slice(&k),
                    value: Bytes::copy_from_slice(&v),
                });
            } else {
                if order == Ordering::Equal {
                    data.next();
                }
                let (k, v) = pre.next().expect("peeked");
                self.buf.extend(Self::from_pre_image(&k, v));
            }
        }
        match last {
            Some(k) => self.cursor = Some(k),
            None => self.data_done = true,
        }
        Ok(())
    }

    /// The next up to [`CHUNK`] keys of the delta: the live data of each, then the
    /// pre-images of the same key interval (a pre-image wins); a key absent at the capture
    /// point is a `Delete`.
    fn fill_delta(&mut self) -> Result<()> {
        let tree = &self.shared.tree;
        if self.dirty.is_none() {
            let mut keys = Vec::new();
            let lo = numbered(DIRTY, self.cap.floor + 1);
            let hi = numbered(DIRTY, self.cap.generation + 1);
            for item in tree.range(lo..hi) {
                let (_, v) = item?;
                decode_key_list(&v, &mut keys).ok_or_else(|| Error::corrupt("dirty list"))?;
            }
            keys.sort_unstable();
            keys.dedup();
            self.dirty = Some((keys, 0));
        }
        let (keys, at) = self.dirty.take().expect("loaded above");
        let end = (at + CHUNK).min(keys.len());
        let chunk = &keys[at..end];
        let mut live = Vec::with_capacity(chunk.len());
        for key in chunk {
            live.push(tree.get(prefixed(DATA, key))?);
        }
        let done = end == keys.len();
        let pre = self.pre_images((!done).then(|| keys[end - 1].as_slice()))?;
        let mut pre = pre.into_iter().peekable();
        for (key, live) in chunk.iter().zip(live) {
            // The interval's pre-images may include keys outside the delta: skip them.
            while pre.next_if(|(k, _)| k < key).is_some() {}
            let rec = match pre.next_if(|(k, _)| k == key) {
                Some((_, old)) => Self::from_pre_image(key, old),
                None => live.map(|raw| SnapshotRecord::Put {
                    key: Bytes::from(prefixed(DATA, key)),
                    value: Bytes::copy_from_slice(&raw),
                }),
            };
            self.buf
                .push_back(rec.unwrap_or_else(|| SnapshotRecord::Delete {
                    key: Bytes::from(prefixed(DATA, key)),
                }));
        }
        if done {
            self.data_done = true;
        } else {
            self.cursor = Some(keys[end - 1].clone());
        }
        self.dirty = Some((keys, end));
        Ok(())
    }
}

/// A sled pre-image (see `KvStore`'s layout) as the record at the capture point.
fn decode_pre_image(v: &[u8]) -> Result<PreImage> {
    let (flags, raw) = v
        .split_first()
        .ok_or_else(|| Error::corrupt("empty cow entry"))?;
    Ok((flags & COW_PRESENT != 0).then(|| sled::IVec::from(raw)))
}

impl Drop for CaptureRecords {
    fn drop(&mut self) {
        let old = {
            let mut st = self.shared.state.write();
            st.capture = None;
            self.shared.cow.lock().reset()
        };
        drop(old);
        self.shared.unpin(self.cap.pinned);
        if let Err(err) = tidy(&self.shared) {
            tracing::warn!(%err, "cleaning up after a snapshot capture failed; the next one retries");
        }
    }
}
