//! A fixed upstream for the load benchmark: canned AppDirect JSON and LongJump XML answers,
//! as fast as hyper serves them, so the table measures the proxies, not the backend.
//! Prints `listening on 127.0.0.1:PORT` and serves until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const COMPANY: &str = r#"{"id":"6e0f3b4a-0000-4000-8000-000000000002","externalId":"contoso","name":"Contoso Partners","enabled":true,"reseller":true,"vendor":false,"channelAdmin":false,"countryCode":"US","phoneNumber":"+1-555-0102","emailAddress":"admin@contoso.example","website":"https://contoso.example","address":{"street1":"2 Main Street","street2":null,"city":"Springfield","state":"IL","zip":"62701","country":"US"},"createdOn":1600086400000}"#;
const ASSOCIATIONS: &str = r#"{"content":[{"id":"8c3e1f40-0000-4000-b000-000000000002","resellerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000001","name":"Northwind Distribution"},"customerCompany":{"id":"6e0f3b4a-0000-4000-8000-000000000002","name":"Contoso Partners"},"createdOn":1600086400000}],"page":{"size":50,"totalElements":1,"totalPages":1,"number":0}}"#;
const TENANT: &str = r#"<?xml version="1.0" encoding="UTF-8"?><platform><tenant><id>1000000002</id><object_id>8c5b349851c041a28d19277a12dee8f0</object_id><name>contoso</name><company>Contoso Partners</company><partner type="" uri="http://127.0.0.1/networking/rest/tenant/1000000001" displayValue="Northwind Distribution">1000000001</partner><msp>1</msp><active>1</active><email>admin@contoso.example</email><phone>650-555-0102</phone><country>United States</country><city>Sunnyvale</city><street>2 Midas Way</street><state>CA</state><zip>94085</zip><number>1742261002</number><start_date>2024-01-02T10:00:00Z</start_date><date_modified>2024-01-02T10:00:00Z</date_modified></tenant><message><code>0</code><description>Success</description></message></platform>"#;
const STATIC: &str = r#"{"status":"ok","items":[1,2,3]}"#;

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let (ct, body) = if path.starts_with("/api/account/v2/companies/") {
        ("application/json", COMPANY)
    } else if path.starts_with("/api/appReseller/v1/companyAssociations") {
        ("application/json", ASSOCIATIONS)
    } else if path.starts_with("/networking/rest/tenant/") {
        ("application/xml", TENANT)
    } else {
        ("application/json", STATIC)
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ct),
    );
    Ok(r)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        });
    }
}
