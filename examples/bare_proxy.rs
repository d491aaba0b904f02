//! The floor of the load benchmark: a reverse proxy with nothing but hyper's server and
//! hyper-util's pooled client, the two pieces Rosetta's request path is built on. The gap
//! between this row and nginx's is the framework's; the gap between this row and Rosetta's
//! passthrough is Rosetta's own work. Usage: `bare_proxy LISTEN UPSTREAM` (`127.0.0.1:0`
//! picks a port; prints `listening on ADDR`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Upstream = Client<HttpConnector, Full<Bytes>>;

async fn proxy(
    client: Upstream,
    base: &'static str,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let up = Request::builder()
        .method(req.method().clone())
        .uri(format!("{base}{pq}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = match client.request(up).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::BAD_GATEWAY;
            return Ok(r);
        }
    };
    let (parts, body) = answer.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

// Rosetta's runtime (the same scheduler settings), so the gap to Rosetta is its own work.
fn main() -> std::io::Result<()> {
    rosetta::server::runtime()?.block_on(run())
}

async fn run() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let upstream = args.next().expect("usage: bare_proxy LISTEN UPSTREAM");
    let base: &'static str = Box::leak(format!("http://{upstream}").into_boxed_str());
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(http);
    let listener = TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| proxy(client.clone(), base, req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
