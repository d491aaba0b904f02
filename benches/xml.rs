//! XML ⇄ JSON throughput on LongJump-like tenant documents of 1, 100 and 10,000 records,
//! beside a row that only tokenizes the same document with quick-xml (every event read),
//! so the conversion's cost is read as a ratio to the parser's own speed in the same run, and
//! beside a "read floor" row (tokenize plus the decoding every converter must do).

// A measurement reads the machine's real clock, not the gateway's.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group};
use quick_xml::Reader;
use quick_xml::events::Event;
use rosetta::demo::canned;
use rosetta::dialect::xml::{XmlRules, json_to_xml_vec, xml_to_json_vec, xml_to_value};

fn tenants(n: usize) -> String {
    canned::tenant_records(n)
}

fn rules() -> XmlRules {
    canned::tenant_rules()
}

fn tokenize(doc: &[u8]) -> usize {
    let mut r = Reader::from_reader(doc);
    let mut n = 0;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => return n,
            Ok(_) => n += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// What any converter must at least do: tokenize, validate names, decode text (entities,
/// line ends) and unescape attribute values. Reported so the conversion's own cost can be
/// read against the reading it cannot avoid, not only against bare tokenizing.
fn read_floor(doc: &[u8]) -> usize {
    let mut r = Reader::from_reader(doc);
    r.config_mut().check_end_names = true;
    let mut n = 0;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => return n,
            Ok(Event::Start(e) | Event::Empty(e)) => {
                n += std::str::from_utf8(e.name().as_ref()).map_or(0, str::len);
                for a in e.attributes() {
                    n += a
                        .ok()
                        .and_then(|a| a.unescape_value().ok())
                        .map_or(0, |v| v.len());
                }
            }
            Ok(Event::Text(t)) => n += t.xml10_content().map_or(0, |t| t.len()),
            Ok(_) => n += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let mut g = c.benchmark_group("xml");
    for n in [1usize, 100, 10_000] {
        let doc = tenants(n);
        let json = xml_to_value(doc.as_bytes(), &rules).unwrap();
        let json_text = serde_json::to_vec(&json).unwrap();
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("tokenize only (quick-xml)", n),
            doc.as_bytes(),
            |b, d| b.iter(|| tokenize(black_box(d))),
        );
        g.bench_with_input(
            BenchmarkId::new("read floor (names, text, attributes decoded)", n),
            doc.as_bytes(),
            |b, d| b.iter(|| read_floor(black_box(d))),
        );
        g.bench_with_input(BenchmarkId::new("xml→json", n), doc.as_bytes(), |b, d| {
            let mut out = Vec::with_capacity(d.len());
            b.iter(|| {
                out.clear();
                xml_to_json_vec(black_box(d), &rules, &mut out).unwrap();
            })
        });
        g.throughput(Throughput::Bytes(json_text.len() as u64));
        g.bench_with_input(BenchmarkId::new("json→xml", n), &json, |b, v| {
            let mut out = Vec::with_capacity(doc.len());
            b.iter(|| {
                out.clear();
                json_to_xml_vec(black_box(v), &rules, &mut out).unwrap();
            })
        });
    }
    g.finish();
}

/// The targets are ratios, and on a shared machine speed drifts by ±15% from one Criterion
/// row to the next, which is enough to flip a ratio near its target. So the ratio is also
/// measured interleaved: tokenize and convert take turns, 31 rounds of about 4 MB each, and
/// the medians are compared. Runs under `cargo bench` with no filter, or a filter of `ratio`.
fn interleaved() {
    let rules = rules();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\ninterleaved medians (31 rounds), MB = 10^6 bytes:");
    for n in [1usize, 100, 10_000] {
        let doc = tenants(n);
        let json = xml_to_value(doc.as_bytes(), &rules).unwrap();
        let json_len = serde_json::to_vec(&json).unwrap().len();
        let reps = (4_000_000 / doc.len()).max(1);
        let (mut tok, mut conv, mut back) = (Vec::new(), Vec::new(), Vec::new());
        let mut out = Vec::with_capacity(doc.len());
        let rate =
            |bytes: usize, t: Instant| (bytes * reps) as f64 / t.elapsed().as_secs_f64() / 1e6;
        for _ in 0..31 {
            let t = Instant::now();
            for _ in 0..reps {
                black_box(tokenize(black_box(doc.as_bytes())));
            }
            tok.push(rate(doc.len(), t));
            let t = Instant::now();
            for _ in 0..reps {
                out.clear();
                xml_to_json_vec(black_box(doc.as_bytes()), &rules, &mut out).unwrap();
            }
            conv.push(rate(doc.len(), t));
            let t = Instant::now();
            for _ in 0..reps {
                out.clear();
                json_to_xml_vec(black_box(&json), &rules, &mut out).unwrap();
            }
            back.push(rate(json_len, t));
        }
        let (tok, conv, back) = (median(tok), median(conv), median(back));
        println!(
            "{n:>6} records: tokenize {tok:6.1} MB/s, xml→json {conv:6.1} MB/s = {:.2} × tokenize (target ≥ 0.50); json→xml {back:6.1} MB/s (target ≥ 150)",
            conv / tok
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-'));
    benches();
    if args.iter().any(|a| a == "--bench") && filter.is_none_or(|f| f.contains("ratio")) {
        interleaved();
    }
    Criterion::default().configure_from_args().final_summary();
}
