//! Converts a LongJump-like document of 10,000 tenant records to JSON a few times: a fixed
//! workload for `valgrind --tool=callgrind` or `perf` when profiling the XML converter.

use rosetta::demo::canned;
use rosetta::dialect::xml::xml_to_json_vec;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let doc = canned::tenant_records(n);
    let rules = canned::tenant_rules();
    let mut out = Vec::with_capacity(doc.len());
    let mut total = 0;
    for _ in 0..rounds {
        out.clear();
        xml_to_json_vec(doc.as_bytes(), &rules, &mut out).expect("converts");
        total += out.len();
    }
    println!("{total} bytes of JSON");
}
