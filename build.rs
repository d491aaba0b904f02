//! Build-time artifacts of the admin API: the commit the binary was built from, for
//! `/v1/version` (when the source is a git checkout with git on the PATH; a source tarball
//! builds without it), and the OpenAPI document rendered as a readable HTML page,
//! `/v1/docs/openapi.html`, from the same `src/admin/openapi.json` the JSON route serves.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::Value;

fn main() {
    openapi_html();
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let hash = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(h) = hash {
        println!("cargo:rustc-env=ROSETTA_GIT_HASH={h}");
    }
}

/// Writes `$OUT_DIR/openapi.html`: every path and method with its summary, parameters and
/// answers, then every schema, each as written in the JSON document.
fn openapi_html() {
    const SOURCE: &str = "src/admin/openapi.json";
    println!("cargo:rerun-if-changed={SOURCE}");
    let text = std::fs::read_to_string(SOURCE).expect("src/admin/openapi.json is readable");
    let doc: Value = serde_json::from_str(&text).expect("src/admin/openapi.json is JSON");
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let version = doc["info"]["version"].as_str().unwrap_or("");
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}\
         code,pre{{background:#f4f4f4}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}}</style>\
         </head><body>\n<h1>{t}</h1>\n<p>Version {v}. The same document as JSON: \
         <a href=\"openapi.json\">openapi.json</a>.</p>\n",
        t = esc(title),
        v = esc(version)
    );
    h.push_str("<h2>Paths</h2>\n");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                if method == "parameters" {
                    continue;
                }
                let _ = write!(
                    h,
                    "<h3 id=\"{id}\"><code>{m} {p}</code></h3>\n<p>{s}</p>\n",
                    id = esc(&format!("{method}-{path}")),
                    m = esc(&method.to_uppercase()),
                    p = esc(path),
                    s = esc(op["summary"].as_str().unwrap_or(""))
                );
                let params: Vec<&Value> = item
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .chain(op["parameters"].as_array().into_iter().flatten())
                    .collect();
                if !params.is_empty() {
                    h.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>\n");
                    for p in params {
                        let _ = writeln!(
                            h,
                            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                            esc(p["name"].as_str().unwrap_or("")),
                            esc(p["in"].as_str().unwrap_or("")),
                            esc(&p["schema"].to_string()),
                            esc(p["description"].as_str().unwrap_or(""))
                        );
                    }
                    h.push_str("</table>\n");
                }
                if let Some(body) = op["requestBody"]["content"].as_object() {
                    for (media, c) in body {
                        let _ = writeln!(
                            h,
                            "<p>Body <code>{}</code>: <code>{}</code></p>",
                            esc(media),
                            esc(&c["schema"].to_string())
                        );
                    }
                }
                if let Some(responses) = op["responses"].as_object() {
                    let codes: Vec<String> = responses.keys().map(|k| esc(k)).collect();
                    let _ = writeln!(h, "<p>Answers: {}</p>", codes.join(", "));
                }
            }
        }
    }
    h.push_str("<h2>Schemas</h2>\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = writeln!(
                h,
                "<h3 id=\"schema-{n}\">{n}</h3>\n<pre>{s}</pre>",
                n = esc(name),
                s = esc(&pretty)
            );
        }
    }
    h.push_str("</body></html>\n");
    let out =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("openapi.html");
    std::fs::write(out, h).expect("OUT_DIR is writable");
}

/// Text as HTML text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
