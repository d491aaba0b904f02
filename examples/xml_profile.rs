//! Converts a LongJump-like document of 10,000 tenant records to JSON a few times: a fixed
//! workload for `valgrind --tool=callgrind` or `perf` when profiling the XML converter.

use rosetta::dialect::xml::{Typing, XmlRules, xml_to_json};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut doc = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><platform>");
    for i in 0..n {
        doc.push_str(&format!(
            "<record><id>{i:09}</id><company>Tenant {i} &amp; Partners</company><name>tenant-{i}</name><active>1</active><msp>{msp}</msp>\
             <partner type=\"Tenant\" uri=\"/networking/rest/tenant/{p}\" displayValue=\"Partner {p}\">{p}</partner>\
             <country>US</country><city>Springfield</city><street>{i} Main Street</street><state>IL</state><zip>62701</zip>\
             <phone>+1-555-{i:04}</phone><start_date>2024-01-01</start_date><date_modified>2024-06-01T10:00:00Z</date_modified></record>",
            msp = i % 2,
            p = i / 10
        ));
    }
    doc.push_str(&format!(
        "<totalRecordCount>{n}</totalRecordCount></platform>"
    ));
    let rules = XmlRules::default()
        .unwrap("/platform")
        .array("/platform/record")
        .typed("record/active", Typing::Boolean)
        .typed("record/msp", Typing::Boolean)
        .typed("totalRecordCount", Typing::Number)
        .root("platform")
        .item_name("platform/record", "record");
    let mut out = Vec::with_capacity(doc.len());
    let mut total = 0;
    for _ in 0..rounds {
        out.clear();
        xml_to_json(doc.as_bytes(), &rules, &mut out).expect("converts");
        total += out.len();
    }
    println!("{total} bytes of JSON");
}
