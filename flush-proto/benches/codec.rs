//! Micro-benchmarks of the wire codecs: the hot paths of a busy flushd are
//! decoding pipelined `add` lines, decoding Postfix `add` requests, and
//! encoding replies.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flush_proto::attr::{encode_request, encode_status, PostfixServerCodec};
use flush_proto::line::{encode_reply, LineCodec};
use flush_proto::{Reply, Request, Status};
use tokio_util::codec::Decoder;

const LINES: usize = 10_000;

fn pipelined_adds() -> BytesMut {
    let mut buf = BytesMut::new();
    for i in 0..LINES {
        buf.extend_from_slice(
            format!("add relay{}.example.test 4ZkQ5d1Xq7z{i:05}\n", i % 100).as_bytes(),
        );
    }
    buf
}

fn decode_lines(c: &mut Criterion) {
    let input = pipelined_adds();
    let mut group = c.benchmark_group("line");
    group.sample_size(20);
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("decode 10k pipelined add lines", |b| {
        b.iter(|| {
            let mut codec = LineCodec::default();
            let mut buf = input.clone();
            let mut n = 0;
            while let Ok(Some(item)) = codec.decode(&mut buf) {
                n += usize::from(item.is_ok());
            }
            assert_eq!(n, LINES);
            black_box(n)
        })
    });
    group.finish();
}

fn decode_postfix(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    let add = Request::parse_line("add relay.example.test 4ZkQ5d1Xq7zBcdF").expect("valid request");
    encode_request(&mut wire, &add).expect("add has a Postfix form");
    let mut group = c.benchmark_group("attr");
    group.sample_size(20);
    group.bench_function("decode one Postfix add request", |b| {
        b.iter(|| {
            let mut codec = PostfixServerCodec::new();
            let mut buf = wire.clone();
            black_box(codec.decode(&mut buf).expect("decodes"))
        })
    });
    group.finish();
}

fn encode_replies(c: &mut Criterion) {
    let replies = [
        Reply::ok(),
        Reply::new(
            Status::Bad,
            "queue ID holds a character other than letters, digits and _",
        ),
        Reply::new(
            Status::Deny,
            "relay.example.test: not eligible for fast flush",
        ),
    ];
    let mut group = c.benchmark_group("reply");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1000 * replies.len() as u64));
    group.bench_function("encode 3000 line replies", |b| {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        b.iter(|| {
            buf.clear();
            for _ in 0..1000 {
                for reply in &replies {
                    encode_reply(reply, &mut buf);
                }
            }
            black_box(buf.len())
        })
    });
    group.bench_function("encode 3000 Postfix statuses", |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            buf.clear();
            for _ in 0..1000 {
                for status in [Status::Ok, Status::Bad, Status::Fail] {
                    encode_status(&mut buf, status);
                }
            }
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, decode_lines, decode_postfix, encode_replies);
criterion_main!(benches);
