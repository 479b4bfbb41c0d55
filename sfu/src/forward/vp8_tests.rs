//! Tests of `vp8.rs` (kept in their own file so both stay short).

use super::*;

/// A descriptor with nothing optional, for building expected rows with `..BASE`.
const BASE: Vp8Descriptor = Vp8Descriptor {
    picture_id: None,
    tl0picidx: None,
    tid: None,
    layer_sync: false,
    keyidx: None,
    non_reference: false,
    start_of_partition: false,
    partition_index: 0,
    header_len: 1,
    is_keyframe: false,
};

/// A 7-bit picture id.
const fn short(value: u16) -> Option<PictureId> {
    Some(PictureId { value, long: false })
}

/// A 15-bit picture id.
const fn long(value: u16) -> Option<PictureId> {
    Some(PictureId { value, long: true })
}

#[test]
fn parse_table() {
    #[rustfmt::skip]
    let cases: &[(&str, &[u8], Result<Vp8Descriptor, Vp8Error>)] = &[
        ("minimal keyframe", &[0x10, 0x00], Ok(Vp8Descriptor { start_of_partition: true, is_keyframe: true, ..BASE })),
        ("minimal inter frame", &[0x10, 0x01], Ok(Vp8Descriptor { start_of_partition: true, ..BASE })),
        ("continuation packet", &[0x00, 0x00], Ok(BASE)),
        ("partition 1 start", &[0x11, 0x00], Ok(Vp8Descriptor { start_of_partition: true, partition_index: 1, ..BASE })),
        ("non-reference", &[0x30, 0x01], Ok(Vp8Descriptor { non_reference: true, start_of_partition: true, ..BASE })),
        ("X without fields", &[0x90, 0x00, 0x00], Ok(Vp8Descriptor { start_of_partition: true, header_len: 2, is_keyframe: true, ..BASE })),
        (
            "7-bit picture id",
            &[0x90, 0x80, 0x05, 0x00],
            Ok(Vp8Descriptor { picture_id: short(5), start_of_partition: true, header_len: 3, is_keyframe: true, ..BASE }),
        ),
        (
            "15-bit picture id",
            &[0x90, 0x80, 0x81, 0x23, 0x01],
            Ok(Vp8Descriptor { picture_id: long(0x0123), start_of_partition: true, header_len: 4, ..BASE }),
        ),
        ("tl0picidx only", &[0x80, 0x40, 0x07, 0x00], Ok(Vp8Descriptor { tl0picidx: Some(7), header_len: 3, ..BASE })),
        (
            "tid only",
            &[0x80, 0x20, 0xa0, 0x00],
            Ok(Vp8Descriptor { tid: Some(2), layer_sync: true, header_len: 3, ..BASE }),
        ),
        ("keyidx only ignores TID and Y", &[0x80, 0x10, 0xe5, 0x00], Ok(Vp8Descriptor { keyidx: Some(5), header_len: 3, ..BASE })),
        (
            "I L T K with 15-bit id",
            &[0x90, 0xf0, 0xff, 0xff, 0x2a, 0x5f, 0x00],
            Ok(Vp8Descriptor {
                picture_id: long(0x7fff),
                tl0picidx: Some(0x2a),
                tid: Some(1),
                keyidx: Some(31),
                start_of_partition: true,
                header_len: 6,
                is_keyframe: true,
                ..BASE
            }),
        ),
        (
            "I L T with 7-bit id",
            &[0x80, 0xe0, 0x7f, 0x00, 0xe0, 0x01],
            Ok(Vp8Descriptor { picture_id: short(127), tl0picidx: Some(0), tid: Some(3), layer_sync: true, header_len: 5, ..BASE }),
        ),
        ("empty", &[], Err(Vp8Error::Truncated { needed: 1, have: 0 })),
        ("X byte missing", &[0x80], Err(Vp8Error::Truncated { needed: 2, have: 1 })),
        ("picture id missing", &[0x80, 0x80], Err(Vp8Error::Truncated { needed: 3, have: 2 })),
        ("long picture id cut", &[0x80, 0x80, 0x80], Err(Vp8Error::Truncated { needed: 4, have: 3 })),
        ("tl0picidx missing", &[0x80, 0x40], Err(Vp8Error::Truncated { needed: 3, have: 2 })),
        ("T/K byte missing", &[0x80, 0x20], Err(Vp8Error::Truncated { needed: 3, have: 2 })),
        ("T/K byte missing after others", &[0x80, 0xf0, 0x81, 0x00, 0x01], Err(Vp8Error::Truncated { needed: 6, have: 5 })),
        ("no payload after minimal", &[0x10], Err(Vp8Error::NoPayload)),
        ("no payload after fields", &[0x80, 0x80, 0x05], Err(Vp8Error::NoPayload)),
    ];
    for (name, input, want) in cases {
        assert_eq!(parse(input), *want, "case {name}");
    }
}

#[test]
fn parse_and_write_never_panic() {
    let seeds: &[&[u8]] = &[&[0x90, 0xf0, 0xff, 0xff, 0x2a, 0x5f, 0x00, 0x9d], &[0xff; 8], &[0x80, 0x10, 0xe5, 0x00]];
    for seed in seeds {
        for end in 0..=seed.len() {
            let mut buf = seed[..end].to_vec();
            if let Ok(desc) = parse(&buf) {
                assert!(desc.header_len < buf.len());
                let _ = keyframe_size(&buf, &desc);
                let rw = Vp8Rewrite { picture_id: Some(u16::MAX), tl0picidx: Some(1), keyidx: Some(u8::MAX) };
                assert_eq!(write(&mut buf, &desc, &rw), Ok(()));
                // Writing must not change the descriptor's shape.
                let again = parse(&buf).expect("rewritten descriptor parses");
                assert_eq!(again.header_len, desc.header_len);
                // A buffer shorter than the descriptor is refused, not indexed.
                assert!(write(&mut buf[..desc.header_len - 1], &desc, &rw).is_err());
            }
        }
    }
}

#[test]
fn keyframe_size_table() {
    type Row = (&'static str, &'static [u8], Option<(u16, u16)>);
    #[rustfmt::skip]
    let cases: &[Row] = &[
        ("640x480", &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01], Some((640, 480))),
        ("scaling bits are masked", &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0xc2, 0xe0, 0x41], Some((640, 480))),
        (
            "after extended descriptor",
            &[0x90, 0x80, 0x81, 0x23, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02, 0xff],
            Some((1280, 720)),
        ),
        ("inter frame", &[0x10, 0x51, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01], None),
        ("not a start packet", &[0x00, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01], None),
        ("bad start code", &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2b, 0x80, 0x02, 0xe0, 0x01], None),
        ("truncated height", &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0], None),
        ("zero width", &[0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x00, 0xe0, 0x01], None),
    ];
    for (name, input, want) in cases {
        let desc = parse(input).expect("test payloads parse");
        assert_eq!(keyframe_size(input, &desc), *want, "case {name}");
    }
}

/// One row of a munger scenario: switch before this packet?, incoming values, expected outgoing values.
struct MungeRow {
    switch: bool,
    pid: Option<PictureId>,
    tl0: Option<u8>,
    keyidx: Option<u8>,
    want: (Option<u16>, Option<u8>, Option<u8>),
}

/// Shorthand for a [`MungeRow`].
const fn row(
    switch: bool,
    pid: Option<PictureId>,
    tl0: Option<u8>,
    keyidx: Option<u8>,
    want: (Option<u16>, Option<u8>, Option<u8>),
) -> MungeRow {
    MungeRow { switch, pid, tl0, keyidx, want }
}

#[test]
fn munger_tables() {
    #[rustfmt::skip]
    let scenarios: &[(&str, &[MungeRow])] = &[
        (
            "switch continuity with 15-bit ids",
            &[
                row(false, long(100), Some(10), Some(1), (Some(100), Some(10), Some(1))),
                row(false, long(100), Some(10), Some(1), (Some(100), Some(10), Some(1))),
                row(false, long(101), Some(11), Some(1), (Some(101), Some(11), Some(1))),
                row(true, long(5000), Some(200), Some(7), (Some(102), Some(12), Some(2))),
                row(false, long(5000), Some(200), Some(7), (Some(102), Some(12), Some(2))),
                row(false, long(5001), Some(200), Some(7), (Some(103), Some(12), Some(2))),
                row(false, long(5002), Some(201), Some(8), (Some(104), Some(13), Some(3))),
                row(true, long(7), Some(0), Some(0), (Some(105), Some(14), Some(4))),
            ],
        ),
        (
            "15-bit picture id wraps",
            &[
                row(false, long(0x7ffe), None, None, (Some(0x7ffe), None, None)),
                row(false, long(0x7fff), None, None, (Some(0x7fff), None, None)),
                row(false, long(0), None, None, (Some(0), None, None)),
                row(true, long(3000), None, None, (Some(1), None, None)),
                row(true, long(0x7fff), None, None, (Some(2), None, None)),
                row(false, long(0), None, None, (Some(3), None, None)),
            ],
        ),
        (
            "switch right at the 15-bit wrap",
            &[
                row(false, long(0x7fff), None, None, (Some(0x7fff), None, None)),
                row(true, long(42), None, None, (Some(0), None, None)),
            ],
        ),
        (
            "7-bit picture id wraps",
            &[
                row(false, short(126), None, None, (Some(126), None, None)),
                row(false, short(127), None, None, (Some(127), None, None)),
                row(true, short(40), None, None, (Some(0), None, None)),
                row(false, short(41), None, None, (Some(1), None, None)),
                row(false, short(100), None, None, (Some(60), None, None)),
                row(false, short(127), None, None, (Some(87), None, None)),
                row(false, short(0), None, None, (Some(88), None, None)),
                row(true, short(5), None, None, (Some(89), None, None)),
            ],
        ),
        (
            "tl0picidx and keyidx wrap",
            &[
                row(false, None, Some(255), Some(31), (None, Some(255), Some(31))),
                row(true, None, Some(9), Some(3), (None, Some(0), Some(0))),
                row(false, None, Some(10), Some(4), (None, Some(1), Some(1))),
                row(false, None, Some(255), Some(2), (None, Some(246), Some(31))),
                row(false, None, Some(0), Some(3), (None, Some(247), Some(0))),
            ],
        ),
        (
            "15-bit source then 7-bit source",
            &[
                row(false, long(0x1234), None, None, (Some(0x1234), None, None)),
                row(true, short(10), None, None, (Some(0x35), None, None)),
                row(false, short(11), None, None, (Some(0x36), None, None)),
                row(true, long(900), None, None, (Some(0x37), None, None)),
            ],
        ),
        (
            "reordered picture keeps its id and does not move newest",
            &[
                row(false, long(100), None, None, (Some(100), None, None)),
                row(false, long(102), None, None, (Some(102), None, None)),
                row(false, long(101), None, None, (Some(101), None, None)),
                row(true, long(20), None, None, (Some(103), None, None)),
            ],
        ),
        (
            "fields absent in one source continue from the last one that had them",
            &[
                row(false, long(10), Some(50), None, (Some(10), Some(50), None)),
                row(true, long(300), None, None, (Some(11), None, None)),
                row(false, long(301), None, None, (Some(12), None, None)),
                row(true, long(77), Some(3), Some(9), (Some(13), Some(51), Some(9))),
            ],
        ),
    ];
    for (name, rows) in scenarios {
        let mut m = Vp8Munger::new();
        for (i, r) in rows.iter().enumerate() {
            if r.switch {
                m.switch_source();
            }
            let desc = Vp8Descriptor { picture_id: r.pid, tl0picidx: r.tl0, keyidx: r.keyidx, ..BASE };
            let got = m.munge(&desc);
            assert_eq!((got.picture_id, got.tl0picidx, got.keyidx), r.want, "{name}: row {i}");
        }
    }
}

#[test]
fn write_round_trip_table() {
    // (name, payload, rewrite, expected (picture id, tl0picidx, keyidx) after parsing the result)
    #[rustfmt::skip]
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, &[u8], Vp8Rewrite, (Option<PictureId>, Option<u8>, Option<u8>))] = &[
        (
            "all fields, 15-bit id",
            &[0x90, 0xf0, 0x81, 0x23, 0x2a, 0x45, 0xaa, 0xbb],
            Vp8Rewrite { picture_id: Some(0x7abc), tl0picidx: Some(1), keyidx: Some(0x1e) },
            (long(0x7abc), Some(1), Some(0x1e)),
        ),
        (
            "7-bit id is masked, not widened",
            &[0x90, 0x80, 0x05, 0xaa],
            Vp8Rewrite { picture_id: Some(0x1ff), tl0picidx: None, keyidx: None },
            (short(0x7f), None, None),
        ),
        (
            "15-bit id is masked",
            &[0x90, 0x80, 0x80, 0x01, 0xaa],
            Vp8Rewrite { picture_id: Some(0xffff), tl0picidx: None, keyidx: None },
            (long(0x7fff), None, None),
        ),
        (
            "keyidx keeps TID and Y",
            &[0x80, 0x30, 0xe3, 0x00],
            Vp8Rewrite { picture_id: None, tl0picidx: None, keyidx: Some(0x3f) },
            (None, None, Some(0x1f)),
        ),
        (
            "values for absent fields are ignored",
            &[0x10, 0x00, 0x01],
            Vp8Rewrite { picture_id: Some(5), tl0picidx: Some(6), keyidx: Some(7) },
            (None, None, None),
        ),
        (
            "no rewrite leaves fields alone",
            &[0x80, 0xd0, 0x85, 0x00, 0x09, 0x03, 0x00],
            Vp8Rewrite::default(),
            (long(0x0500), Some(9), Some(3)),
        ),
    ];
    for (name, input, rw, want) in cases {
        let before = parse(input).expect("test payloads parse");
        let mut buf = input.to_vec();
        write(&mut buf, &before, rw).expect("write fits");
        let after = parse(&buf).expect("rewritten payload parses");
        assert_eq!((after.picture_id, after.tl0picidx, after.keyidx), *want, "case {name}");
        assert_eq!(
            Vp8Descriptor { picture_id: None, tl0picidx: None, keyidx: None, ..after },
            Vp8Descriptor { picture_id: None, tl0picidx: None, keyidx: None, ..before },
            "case {name}: other fields unchanged"
        );
        assert_eq!(buf[before.header_len..], input[before.header_len..], "case {name}: payload unchanged");
    }
}

#[test]
fn munge_then_write_round_trip() {
    let packets: &[&[u8]] = &[&[0x90, 0xe0, 0x80, 0x10, 0x05, 0x00, 0x00], &[0x90, 0xe0, 0xff, 0xff, 0x09, 0x40, 0x00]];
    let mut m = Vp8Munger::new();
    let mut outs = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            m.switch_source();
        }
        let desc = parse(p).expect("test payloads parse");
        let rw = m.munge(&desc);
        let mut buf = p.to_vec();
        write(&mut buf, &desc, &rw).expect("write fits");
        let out = parse(&buf).expect("rewritten payload parses");
        outs.push((out.picture_id.map(|p| p.value), out.tl0picidx));
    }
    assert_eq!(outs, [(Some(0x10), Some(5)), (Some(0x11), Some(6))]);
}

#[test]
fn dropped_pictures_take_no_picture_id() {
    // columns: name, packets as (picture id in, dropped?), picture ids out of the forwarded ones
    let rows: &[(&str, &[(u16, bool)], &[u16])] = &[
        ("nothing dropped", &[(10, false), (11, false), (12, false)], &[10, 11, 12]),
        ("one picture of two packets", &[(10, false), (11, true), (11, true), (12, false)], &[10, 11]),
        ("every other picture", &[(10, false), (11, true), (12, false), (13, true), (14, false)], &[10, 11, 12]),
        ("two in a row", &[(10, false), (11, true), (12, true), (13, false), (13, false)], &[10, 11, 11]),
        // the missing picture 11 keeps its slot; 12, dropped after it, takes none
        ("after a loss", &[(10, false), (12, true), (13, false)], &[10, 12]),
        (
            "a late picture before a dropped one keeps its id",
            &[(10, false), (12, true), (13, false), (11, false)],
            &[10, 12, 11],
        ),
        (
            "across the 15-bit wrap",
            &[(0x7ffe, false), (0x7fff, true), (0, false), (1, true), (2, false)],
            &[0x7ffe, 0x7fff, 0],
        ),
        ("a late packet of an older picture", &[(10, false), (11, false), (10, true), (12, false)], &[10, 11, 12]),
    ];
    for (name, packets, want) in rows {
        let mut m = Vp8Munger::new();
        let mut got = Vec::new();
        for &(pid, dropped) in *packets {
            let desc = Vp8Descriptor { picture_id: long(pid), ..BASE };
            if dropped {
                m.drop_packet(&desc);
            } else {
                got.extend(m.munge(&desc).picture_id);
            }
        }
        assert_eq!(&got, want, "{name}");
    }
}
