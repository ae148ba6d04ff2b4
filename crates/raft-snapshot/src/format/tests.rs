use super::*;

fn header(kind: SnapshotKind) -> FileHeader {
    FileHeader {
        kind,
        id: SnapshotId(42),
        parent: (kind == SnapshotKind::Delta).then_some(SnapshotId(41)),
        index: 7,
        term: 2,
        created_ms: 1234,
        membership: MembershipRecord {
            voters: vec![1, 2],
            voters_outgoing: vec![3],
            learners: vec![4],
            learners_next: vec![],
            auto_leave: true,
        },
    }
}

fn write(kind: SnapshotKind, recs: &[Record], block_size: usize) -> (Vec<u8>, FileSummary) {
    let opts = WriterOptions {
        block_size,
        zstd_level: 1,
    };
    let mut w = FileWriter::new(Vec::new(), "mem", &header(kind), opts).unwrap();
    for r in recs {
        w.record(r).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> Result<(FileHeader, Vec<Record>, FileSummary)> {
    let mut r = FileReader::new(bytes, "mem", true)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    Ok((r.header().clone(), out, r.summary()))
}

fn put(k: &str, v: &str) -> Record {
    Record::Put {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

#[test]
fn round_trip_with_header_counts_and_checksum() {
    let recs = vec![
        put("a", ""),
        Record::Delete {
            key: Bytes::from_static(b"b"),
        },
        put("c", &"x".repeat(300)),
        put("d", "4"),
    ];
    for block in [1, 16, 1 << 20] {
        let (bytes, sum) = write(SnapshotKind::Delta, &recs, block);
        assert_eq!(sum.size, bytes.len() as u64);
        assert_eq!(sum.checksum, crc32c::crc32c(&bytes));
        assert_eq!((sum.puts, sum.deletes), (3, 1));
        let (h, got, rsum) = read_all(&bytes).unwrap();
        assert_eq!(h, header(SnapshotKind::Delta));
        assert_eq!(got, recs);
        assert_eq!(rsum, sum);
    }
}

#[test]
fn empty_full_snapshot() {
    let (bytes, sum) = write(SnapshotKind::Full, &[], 64);
    let (_, got, rsum) = read_all(&bytes).unwrap();
    assert!(got.is_empty());
    assert_eq!(rsum, sum);
}

#[test]
fn every_single_bit_flip_and_truncation_is_detected() {
    let recs: Vec<_> = (0..20).map(|i| put(&format!("k{i:02}"), "value")).collect();
    let (bytes, _) = write(SnapshotKind::Full, &recs, 50);
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(
            matches!(read_all(&b), Err(Error::Corrupt { .. })),
            "flip of bit {i}"
        );
    }
    for cut in 0..bytes.len() {
        assert!(matches!(
            read_all(&bytes[..cut]),
            Err(Error::Corrupt { .. })
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(read_all(&longer), Err(Error::Corrupt { .. })));
}

#[test]
fn writer_refuses_bad_input() {
    let opts = WriterOptions::default();
    let mut w = FileWriter::new(Vec::new(), "m", &header(SnapshotKind::Full), opts).unwrap();
    w.put(b"b", b"").unwrap();
    assert!(w.put(b"b", b"").is_err());
    assert!(w.delete(b"c").is_err());
    let mut bad = header(SnapshotKind::Full);
    bad.parent = Some(SnapshotId(1));
    assert!(FileWriter::new(Vec::new(), "m", &bad, opts).is_err());
}
