use super::*;

fn segment(records: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = SegmentHeader {
        seq: 3,
        first_index: 10,
        version: VERSION,
    }
    .encode()
    .to_vec();
    records(&mut b);
    b.resize(b.len() + 64, 0);
    b
}

#[test]
fn records_round_trip() {
    let meta = SnapshotMeta {
        index: 9,
        term: 2,
        membership: Membership {
            voters: [1, 2, 3].into(),
            learners: [4].into(),
            auto_leave: true,
            ..Membership::default()
        },
    };
    let hs = HardState {
        term: 3,
        vote: Some(2),
        commit: 9,
    };
    let buf = segment(|b| {
        put_hard_state(b, &hs);
        put_snapshot(b, &meta, true);
        put_entry(b, 10, 3, EntryKind::ConfChange, b"hello");
        put_truncate(b, 10);
    });
    let (h, mut r) = SegmentReader::new(&buf).unwrap();
    assert_eq!(
        h,
        SegmentHeader {
            seq: 3,
            first_index: 10,
            version: VERSION,
        }
    );
    let mut got = Vec::new();
    loop {
        match r.step() {
            Step::Record(rec, _) => got.push(rec),
            Step::End => break,
            Step::Bad(e) => panic!("{e}"),
        }
    }
    assert_eq!(got[0], Record::HardState(hs));
    assert_eq!(
        got[1],
        Record::Snapshot {
            meta: Box::new(meta),
            clears: true
        }
    );
    let Record::Entry {
        index,
        term,
        kind,
        data_offset,
        data_len,
    } = got[2].clone()
    else {
        panic!()
    };
    assert_eq!((index, term, kind), (10, 3, EntryKind::ConfChange));
    assert_eq!(&buf[data_offset..data_offset + data_len], b"hello");
    assert_eq!(got[3], Record::Truncate { from: 10 });
}

#[test]
fn bit_flips_are_caught_and_later_records_found() {
    let mut buf = segment(|b| {
        for i in 1..5 {
            put_entry(b, i, 1, EntryKind::Normal, &[i as u8; 40]);
        }
    });
    buf[SEGMENT_HEADER_LEN + 30] ^= 1;
    assert!(matches!(decode_at(&buf, SEGMENT_HEADER_LEN), Step::Bad(_)));
    assert_eq!(
        valid_record_after(&buf, SEGMENT_HEADER_LEN),
        Some(SEGMENT_HEADER_LEN + entry_record_len(40))
    );
}
/// Every record of a segment, with its offset.
fn steps(buf: &[u8]) -> (Vec<(usize, Record)>, usize, Option<String>) {
    let (_, mut r) = SegmentReader::new(buf).unwrap();
    let mut got = Vec::new();
    loop {
        let at = r.position();
        match r.step() {
            Step::Record(rec, _) => got.push((at, rec)),
            Step::End => return (got, at, None),
            Step::Bad(e) => return (got, at, Some(e)),
        }
    }
}

fn three_entries() -> Vec<u8> {
    let mut piece = Vec::new();
    for i in 1..=3 {
        put_entry(&mut piece, i, 1, EntryKind::Normal, &[i as u8; 30]);
    }
    piece
}

#[test]
fn frames_verify_their_records_and_fall_back_when_damaged() {
    let piece = three_entries();
    let buf = segment(|b| {
        put_frames(b, [&piece[..]], true);
    });
    let frame_at = SEGMENT_HEADER_LEN;
    let first = frame_at + RECORD_HEADER_LEN;
    let (got, end, bad) = steps(&buf);
    assert_eq!(bad, None);
    assert_eq!(end, first + piece.len());
    assert_eq!(
        got[0],
        (
            frame_at,
            Record::Frame {
                verified_end: Some(first + piece.len())
            }
        )
    );
    assert_eq!(got.len(), 4);

    // A bit flip in the second record: the frame's CRC fails, its first record is valid
    // on its own, so the records are read one by one and the second one is the bad one.
    let second = first + entry_record_len(30);
    let mut flipped = buf.clone();
    flipped[second + 20] ^= 1;
    let (got, at, bad) = steps(&flipped);
    assert_eq!(got[0].1, Record::Frame { verified_end: None });
    assert_eq!(got.len(), 2);
    assert_eq!(
        (at, bad.as_deref()),
        (second, Some("record checksum mismatch"))
    );
    assert_eq!(
        valid_record_after(&flipped, second),
        Some(second + entry_record_len(30))
    );

    // A bit flip in the first record: nothing in the frame to go on with.
    let mut flipped = buf.clone();
    flipped[first + 20] ^= 1;
    let (got, at, bad) = steps(&flipped);
    assert!(got.is_empty());
    assert_eq!(
        (at, bad.as_deref()),
        (frame_at, Some("batch frame checksum mismatch"))
    );
}

#[test]
fn put_frames_keeps_pieces_whole() {
    let small = three_entries();
    let mut big = Vec::new();
    put_entry(&mut big, 4, 1, EntryKind::Normal, &vec![9u8; FRAME_BYTES]);
    let pieces = [&small[..], &small[..], &big[..], &small[..]];
    let mut buf = Vec::new();
    let offsets = put_frames(&mut buf, pieces, true);
    // The two small pieces share a frame, the big one gets its own, then a new one.
    let h = RECORD_HEADER_LEN;
    assert_eq!(
        offsets,
        [
            h,
            h + small.len(),
            2 * h + 2 * small.len(),
            3 * h + 2 * small.len() + big.len()
        ]
    );
    for (piece, at) in pieces.iter().zip(&offsets) {
        assert_eq!(&buf[*at..*at + piece.len()], *piece);
    }
    let frames = [0, h + 2 * small.len(), 2 * h + 2 * small.len() + big.len()];
    for f in frames {
        assert!(matches!(
            decode_at(&buf, f),
            Step::Record(
                Record::Frame {
                    verified_end: Some(_)
                },
                _
            )
        ));
    }
    let mut bare = Vec::new();
    assert_eq!(put_frames(&mut bare, pieces, false), {
        let mut at = 0;
        pieces.map(|p| {
            at += p.len();
            at - p.len()
        })
    });
}

#[test]
fn versions() {
    for version in [MIN_VERSION, VERSION] {
        let h = SegmentHeader {
            version,
            seq: 1,
            first_index: 2,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
    }
    let newer = SegmentHeader {
        version: VERSION + 1,
        seq: 1,
        first_index: 2,
    };
    let err = SegmentHeader::decode(&newer.encode()).unwrap_err();
    let want = format!("unsupported segment version {}", VERSION + 1);
    assert!(err.contains(&want), "{err}");
}
