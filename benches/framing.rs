//! Throughput of the pure framing code: how fast a read buffer full of typical server output
//! (DataRows, CommandComplete, ReadyForQuery) is scanned for forwardable messages.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use doltgres_sidecar::protocol::frame::{Scanner, Seen};
use std::hint::black_box;

fn server_batch(rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rows {
        let value = format!("{i:08}");
        let body_len = 2 + 4 + value.len();
        out.push(b'D');
        out.extend_from_slice(&((body_len + 4) as u32).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    out
}

fn scan(c: &mut Criterion) {
    let batch = server_batch(500);
    let messages = 502u64;
    let mut group = c.benchmark_group("scanner");
    group.throughput(Throughput::Elements(messages));
    group.bench_function("messages", |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(1 << 30);
            let mut ready_for_query = 0;
            let n = scanner
                .scan(black_box(&batch), |seen| {
                    if let Seen::Whole(m) = seen {
                        ready_for_query += (m.tag == b'Z') as u32;
                    }
                })
                .unwrap();
            black_box((n, ready_for_query))
        })
    });
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("bytes", |b| {
        b.iter(|| {
            let mut scanner = Scanner::new(1 << 30);
            black_box(scanner.scan(black_box(&batch), |_| {}).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
