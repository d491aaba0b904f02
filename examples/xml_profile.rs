//! Converts a 10,000-record LongJump-like document many times, for `perf record`.
use rosetta::dialect::xml::{Typing, XmlRules, xml_to_json};

fn main() {
    let mut s = String::from("<platform>");
    for i in 0..10_000 {
        s.push_str(&format!("<record><id>{i:09}</id><company>Tenant {i} &amp; Partners</company><name>tenant-{i}</name><active>1</active><msp>{}</msp><partner type=\"Tenant\" uri=\"/t/{}\" displayValue=\"P\">{}</partner><country>US</country><city>Springfield</city><street>{i} Main</street><state>IL</state><zip>62701</zip><phone>+1-555</phone><start_date>2024-01-01</start_date></record>", i % 2, i / 10, i / 10));
    }
    s.push_str("</platform>");
    let rules = XmlRules::default()
        .unwrap("/platform")
        .array("/platform/record")
        .typed("record/active", Typing::Boolean)
        .typed("record/msp", Typing::Boolean);
    let mut out = Vec::new();
    for _ in 0..20 {
        out.clear();
        xml_to_json(s.as_bytes(), &rules, &mut out).unwrap();
    }
    println!("{}", out.len());
}
