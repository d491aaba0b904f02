//! 100 MB documents converted in bounded memory: throughput and peak RSS.
//!
//! Writes a ~100 MB LongJump-like `<platform>` document of tenant records to a temporary
//! file, then converts it XML → JSON from the file (streaming), the resulting JSON → XML
//! from its file (streaming), and, for contrast, XML → an in-memory JSON value. Peak RSS
//! (`VmHWM`) is reset before each phase (`/proc/self/clear_refs`), so each row's figure is
//! that phase's own high-water mark. Linux only; run with `cargo bench --bench xml_stream`.

// A measurement reads the machine's real clock, not the gateway's.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use rosetta::dialect::xml::{
    Typing, XmlRules, json_reader_to_xml, xml_reader_to_json, xml_to_value,
};

const TARGET_BYTES: u64 = 100 * 1024 * 1024;

fn rules() -> XmlRules {
    XmlRules::default()
        .unwrap("/platform")
        .array("/platform/tenant")
        .typed("tenant/active", Typing::Boolean)
        .typed("tenant/msp", Typing::Boolean)
        .root("platform")
}

fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the high-water mark to the current RSS, so the next reading is this phase's peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn row(what: &str, bytes: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what:<44} {:>7.1} MB in {secs:>6.2} s = {:>6.1} MB/s   peak RSS {:>7.1} MB",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        status("VmHWM:") as f64 / 1024.0
    );
}

fn main() -> std::io::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too: skip under test.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let xml_path = dir.path().join("tenants.xml");
    let json_path = dir.path().join("tenants.json");
    {
        let mut w = BufWriter::new(File::create(&xml_path)?);
        w.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><platform>")?;
        let mut written = 0u64;
        let mut i = 0u64;
        while written < TARGET_BYTES {
            let rec = format!(
                "<tenant><id>{i:010}</id><object_id>{i:032x}</object_id><name>tenant-{i}</name><company>Tenant {i} &amp; Partners</company>\
                 <partner type=\"\" uri=\"https://gw.example/networking/rest/tenant/{p}\" displayValue=\"Partner {p}\">{p}</partner>\
                 <msp>{msp}</msp><active>1</active><email>admin@tenant-{i}.example</email><phone>650-555-{r:04}</phone>\
                 <country>United States</country><city>Sunnyvale</city><street>{i} Midas Way</street><state>CA</state><zip>94085</zip>\
                 <start_date>2010-11-12T13:14:15Z</start_date><date_modified>2010-11-12T13:14:15Z</date_modified></tenant>\n",
                msp = i % 2,
                p = i / 10,
                r = i % 10_000
            );
            w.write_all(rec.as_bytes())?;
            written += rec.len() as u64;
            i += 1;
        }
        w.write_all(
            b"<message><code>0</code><description>Success</description></message></platform>",
        )?;
        w.flush()?;
        println!("document: {i} tenant records");
    }
    let xml_len = std::fs::metadata(&xml_path)?.len();
    let rules = rules();

    reset_peak();
    println!("baseline RSS {:.1} MB", status("VmRSS:") as f64 / 1024.0);
    let start = Instant::now();
    let input = BufReader::with_capacity(64 * 1024, File::open(&xml_path)?);
    let out = BufWriter::with_capacity(64 * 1024, File::create(&json_path)?);
    xml_reader_to_json(input, &rules, out).expect("XML → JSON");
    row("XML → JSON, streaming (file → file)", xml_len, start);

    let json_len = std::fs::metadata(&json_path)?.len();
    reset_peak();
    let start = Instant::now();
    let input = BufReader::with_capacity(64 * 1024, File::open(&json_path)?);
    let out = BufWriter::with_capacity(64 * 1024, std::io::sink());
    json_reader_to_xml(input, &rules, out).expect("JSON → XML");
    row("JSON → XML, streaming (file → sink)", json_len, start);

    reset_peak();
    let start = Instant::now();
    let bytes = std::fs::read(&xml_path)?;
    let value = xml_to_value(&bytes, &rules).expect("XML → value");
    row("XML → JSON value in memory (contrast)", xml_len, start);
    drop(value);
    Ok(())
}
