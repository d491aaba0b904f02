//! What the `rosetta` subcommands do, kept in the library so tests can drive them.

use std::path::Path;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::config::{Config, StaticKeyConfig, UpstreamAuthConfig};
use crate::gateway::stack::Gateway;
use crate::mapping::pack::load_catalog;
use crate::server::{ServerOptions, serve as serve_http, shutdown_signal};

/// `rosetta check`: loads the configuration and every enabled pack, prints every problem,
/// and lists the filters that run on jaq rather than the filter plan (`strict_jq`, from the
/// flag or the configuration, refuses them).
pub fn check(path: &Path, strict_jq: bool) -> ExitCode {
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = crate::limits::rate::policies(&cfg.rate_limits) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    cfg.strict_jq |= strict_jq;
    for warning in secret_warnings(path, &cfg) {
        eprintln!("warning: {warning}");
    }
    match load_catalog(&cfg) {
        Ok(catalog) => {
            for pack in &catalog.packs {
                let n = catalog
                    .routes
                    .iter()
                    .filter(|r| r.pack.name == pack.name)
                    .count();
                println!(
                    "ok: pack {} ({} routes, client dialect {}, mounted at {})",
                    pack.name,
                    n,
                    pack.client_dialect.name(),
                    pack.mount
                );
            }
            let engines = catalog.jq_engines();
            for u in &engines.on_jaq {
                println!("jaq: {u}");
            }
            println!(
                "ok: {} routes in {} packs",
                catalog.routes.len(),
                catalog.packs.len()
            );
            println!(
                "ok: {} jq filters on the filter plan, {} on jaq",
                engines.planned,
                engines.on_jaq.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::FAILURE
        }
    }
}

/// `rosetta serve`: runs the gateway until SIGTERM/SIGINT, then drains.
pub async fn serve(path: &Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::init_logging(&cfg.log);
    for warning in secret_warnings(path, &cfg) {
        tracing::warn!("{warning}");
    }
    match run(cfg, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// What `check` and `serve` say about the secrets of the configuration at `path`: each one
/// written in the file, and each upstream secret nobody gave (`serve` refuses to start).
fn secret_warnings(path: &Path, cfg: &Config) -> Vec<String> {
    use crate::config::secrets::{env_var, inline, missing};
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let written = inline(&text).into_iter().map(|k| {
        format!(
            "{k} is written in {}: give it in the environment ({}) instead",
            path.display(),
            env_var(&k)
        )
    });
    let unset = missing(cfg).into_iter().map(|k| {
        format!(
            "{k} is not set: serve refuses to start until {} is",
            env_var(&k)
        )
    });
    written.chain(unset).collect()
}

async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), String> {
    let gateway = Gateway::from_config(&cfg).map_err(|e| error_chain(&e))?;
    gateway.bootstrap(&cfg.admin).await?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let admin = TcpListener::bind(&cfg.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.admin_listen))?;
    // The bound addresses (a configured port 0 becomes a real one): scripts and tests read them.
    let bound = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(listen = %bound(&listener), admin = %bound(&admin), routes = gateway.catalog.routes.len(), "rosetta is serving");
    serve_gateway(
        &gateway,
        listener,
        admin,
        ServerOptions::from(&cfg.server),
        shutdown,
    )
    .await
}

/// Serves the proxy and the admin API until `shutdown`, drains both, then waits until every
/// queued store write (audit rows) is durable: a graceful stop loses nothing counted.
pub async fn serve_gateway(
    gateway: &Gateway,
    proxy: TcpListener,
    admin: TcpListener,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let proxy = serve_http(proxy, gateway.service(), opts, wait(stopped.clone()));
    let admin = serve_http(admin, gateway.admin().service(), opts, wait(stopped));
    let trigger = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    // Captures older than the retention are deleted once a minute.
    let purge = {
        let (store, keep) = (gateway.store.clone(), gateway.capture_retention);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let cutoff = crate::clock::system_ms() - keep.as_millis() as i64;
                if let Err(e) = store.purge_captures(cutoff).await {
                    tracing::warn!(error = %e, "purging old captures failed");
                }
            }
        })
    };
    let (p, a, ()) = tokio::join!(proxy, admin, trigger);
    purge.abort();
    let flushed = gateway.store.flush().await;
    p.map_err(|e| format!("server failed: {e}"))?;
    a.map_err(|e| format!("admin server failed: {e}"))?;
    flushed.map_err(|e| format!("the store could not be flushed: {e}"))?;
    tracing::info!("store flushed; stopped");
    Ok(())
}

/// `rosetta demo`: sample backends, the gateway in front of them, a key, curl lines.
pub async fn demo(path: &Path) -> ExitCode {
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    crate::telemetry::init_logging(&cfg.log);
    let (appdirect, redapi, longjump, fusion) = match (
        crate::demo::start_appdirect().await,
        crate::demo::start_redapi(
            crate::demo::REDAPI_CLIENT_ID,
            crate::demo::REDAPI_CLIENT_SECRET,
        )
        .await,
        crate::demo::start_longjump().await,
        crate::demo::start_fusion().await,
    ) {
        (Ok(a), Ok(r), Ok(l), Ok(f)) => (a, r, l, f),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            eprintln!("cannot start the sample backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    let samples = DemoUrls {
        appdirect: appdirect.url(),
        redapi: redapi.url(),
        longjump: longjump.url(),
        fusion: fusion.url(),
    };
    point_at_demo(&mut cfg, &samples);
    let key = crate::demo::random_key();
    cfg.identity.static_keys.push(StaticKeyConfig {
        sha256: crate::identity::sha256_hex(&key),
        user: "demo".into(),
        company: crate::demo::DEMO_COMPANY_KEY.into(),
        roles: vec!["PARTNER".into()],
    });
    // A fresh store per demo run, so the printed admin key is the only administrator.
    let store_file = std::env::temp_dir().join(format!("rosetta-demo-{}.db", std::process::id()));
    cfg.store.path = store_file.clone();
    let gateway = match Gateway::from_config(&cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let admin_key = match demo_admin(&gateway).await {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cannot create the demo administrator: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The configured ports when they are free, so the printed lines are the usual ones; any
    // free port otherwise, so a second demo still starts.
    let (listener, addr) = match bind_or_any(&cfg.listen).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (admin_listener, admin_addr) = match bind_or_any(&cfg.admin_listen).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", demo_banner(&format!("http://{addr}"), &key, &samples));
    println!(
        "{}",
        admin_banner(&format!("http://{admin_addr}"), &admin_key)
    );
    let result = serve_gateway(
        &gateway,
        listener,
        admin_listener,
        ServerOptions::from(&cfg.server),
        shutdown_signal(),
    )
    .await;
    appdirect.shutdown().await;
    redapi.shutdown().await;
    longjump.shutdown().await;
    fusion.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store_file.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind_or_any(addr: &str) -> std::io::Result<(TcpListener, std::net::SocketAddr)> {
    let l = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await?,
    };
    let a = l.local_addr()?;
    Ok((l, a))
}

/// The demo's administrator: user `admin` (ADMIN) of company `system`, with an API key.
async fn demo_admin(gateway: &Gateway) -> Result<String, String> {
    use crate::store::{ApiKeyInfo, Company, User};
    let store = &gateway.store;
    store
        .create_company(Company {
            key: "system".into(),
            detail: Some("Rosetta's own administrators".into()),
            enabled: true,
        })
        .await
        .map_err(|e| e.to_string())?;
    store
        .create_company(Company {
            key: crate::demo::DEMO_COMPANY_KEY.into(),
            detail: Some("Northwind Distribution (sample)".into()),
            enabled: true,
        })
        .await
        .map_err(|e| e.to_string())?;
    store
        .create_user(
            User {
                username: "admin".into(),
                name: Some("Demo Administrator".into()),
                email: None,
                phone: None,
                company_key: "system".into(),
                enabled: true,
                roles: vec!["ADMIN".into()],
                timezone: 0,
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    let secret = crate::identity::passwords::new_api_key()?;
    store
        .create_key(
            ApiKeyInfo {
                id: "demo-admin".into(),
                username: "admin".into(),
                prefix: secret[..10].to_owned(),
                created_ms: 0,
                expires_ms: None,
                revoked: false,
            },
            crate::identity::sha256_hex(&secret),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(secret)
}

/// The admin part of the demo's text.
pub fn admin_banner(admin: &str, key: &str) -> String {
    let h = format!("-H 'Authorization: Bearer {key}'");
    let lines = [
        ("Admin API version", format!("curl -s {admin}/v1/version")),
        ("Users", format!("curl -s {h} {admin}/v1/users")),
        (
            "Create a user of the sample company",
            format!(
                "curl -s {h} -H 'Content-Type: application/json' -d '{{\"username\":\"ann\",\"password\":\"s3cret-pass\",\"company_key\":\"northwind\",\"roles\":[\"USER\"]}}' {admin}/v1/users"
            ),
        ),
        (
            "An API key for ann (the secret is shown once)",
            format!(
                "curl -s {h} -X POST -H 'Content-Type: application/json' {admin}/v1/users/ann/keys"
            ),
        ),
        (
            "Today's audit trail (one action per proxied request)",
            format!("curl -s {h} '{admin}/v1/audit?sort_direction=DESC&limit=5'"),
        ),
    ];
    let mut out = format!("Admin API  {admin}\n  admin key  {key}   (user admin, role ADMIN)\n\n");
    for (what, line) in lines {
        out.push_str(&format!("  # {what}\n  {line}\n"));
    }
    out
}

/// Where the sample backends listen.
#[derive(Debug, Clone)]
pub struct DemoUrls {
    /// Base URL of the sample AppDirect.
    pub appdirect: String,
    /// Base URL of the sample RedAPI.
    pub redapi: String,
    /// Base URL of the sample LongJump.
    pub longjump: String,
    /// Base URL of the sample Fusion DRaaS.
    pub fusion: String,
}

/// Points the configuration's upstreams at the sample backends.
pub fn point_at_demo(cfg: &mut Config, urls: &DemoUrls) {
    let (appdirect, redapi) = (urls.appdirect.as_str(), urls.redapi.as_str());
    if let Some(u) = cfg.upstreams.get_mut("longjump") {
        u.url = urls.longjump.clone();
        u.auth = UpstreamAuthConfig::None;
    }
    if let Some(u) = cfg.upstreams.get_mut("fusion") {
        u.url = urls.fusion.clone();
        u.auth = UpstreamAuthConfig::Header {
            name: "authorization".into(),
            value: format!("Bearer {}", crate::demo::fusion::FUSION_TOKEN),
        };
        u.vars.insert(
            "draas_instance".into(),
            crate::demo::fusion::DRAAS_INSTANCE.into(),
        );
        u.vars
            .insert("group".into(), crate::demo::fusion::GROUP_ID.into());
    }
    if let Some(u) = cfg.upstreams.get_mut("appdirect") {
        u.url = appdirect.to_owned();
        u.auth = UpstreamAuthConfig::None;
    }
    if let Some(u) = cfg.upstreams.get_mut("redapi") {
        u.url = redapi.to_owned();
        u.auth = UpstreamAuthConfig::Oauth2 {
            token_url: format!("{redapi}/oauth2/token"),
            client_id: crate::demo::REDAPI_CLIENT_ID.into(),
            client_secret: crate::demo::REDAPI_CLIENT_SECRET.into(),
            scope: None,
            refresh_skew: std::time::Duration::from_secs(30),
        };
    }
}

/// The text `rosetta demo` prints: where things are and lines to paste.
pub fn demo_banner(gateway: &str, key: &str, urls: &DemoUrls) -> String {
    let (appdirect, redapi, longjump) = (&urls.appdirect, &urls.redapi, &urls.longjump);
    let lj = crate::demo::longjump::tenant_id(1);
    let fu = crate::demo::fusion::reseller_id(2);
    let c = crate::demo::DISTRIBUTOR_ID;
    let p = crate::demo::PARTNER_ID;
    let h = format!("-H 'Authorization: Bearer {key}'");
    let lines = [
        (
            "Your company (the key's company, northwind)",
            format!("curl -s {h} {gateway}/companies"),
        ),
        (
            "One company",
            format!("curl -s {h} {gateway}/companies/{c}"),
        ),
        (
            "A company outside your reach (Outside Corp): 404, as an unknown one",
            format!(
                "curl -s {h} {gateway}/companies/{}",
                crate::demo::data::company_id(90)
            ),
        ),
        (
            "Its customers, 2 a page, with the total",
            format!(
                "curl -s {h} '{gateway}/companies/{c}/customers?maxResults=2&shouldReturnCount=true'"
            ),
        ),
        (
            "Every customer below it",
            format!(
                "curl -s {h} '{gateway}/companies/{c}/customers/transitive?shouldReturnCount=true'"
            ),
        ),
        (
            "Search by name",
            format!("curl -s {h} '{gateway}/companies/search?search=a&maxResults=5'"),
        ),
        (
            "Users of a company",
            format!("curl -s {h} '{gateway}/users/list?companyId={p}'"),
        ),
        (
            "Create a customer",
            format!(
                "curl -s {h} -H 'Content-Type: application/json' -d '{{\"companyName\":\"Demo Customer\",\"type\":\"Customer\"}}' {gateway}/companies/{p}/customers"
            ),
        ),
        (
            "Products (new RedAPI, OAuth2 behind the scenes)",
            format!("curl -s {h} {gateway}/products"),
        ),
        (
            "Subscriptions",
            format!("curl -s {h} {gateway}/companies/{p}/subscriptions"),
        ),
        (
            "Consumption summary",
            format!("curl -s {h} {gateway}/companies/{c}/consumption/summary"),
        ),
        (
            "Backup status summary",
            format!("curl -s {h} {gateway}/companies/{c}/backups/status/summary"),
        ),
        (
            "An error, as V1 problem details",
            format!("curl -s {h} {gateway}/companies/search"),
        ),
        (
            "LongJump XML client on AppDirect: one tenant",
            format!("curl -s {h} {gateway}/networking/rest/tenant/{c}"),
        ),
        (
            "LongJump search: filter, fields, sort, page, total",
            format!(
                "curl -s {h} -G {gateway}/networking/rest/tenant --data-urlencode \"filter=msp equals 1 AND company contains 'i'\" --data-urlencode 'fieldList=id,company,partner' -d sortBy=company -d pageSize=2 -d getTotalRecordCount=true"
            ),
        ),
        (
            "LongJump create (XML body)",
            format!(
                "curl -s {h} -H 'Content-Type: application/xml' -d '<platform><tenant><company>BSmith Inc</company><email>bsmith@email.com</email><partner>{p}</partner></tenant></platform>' {gateway}/networking/rest/tenant"
            ),
        ),
        (
            "A LongJump error (filter that does not parse)",
            format!(
                "curl -s {h} -G {gateway}/networking/rest/tenant --data-urlencode \"filter=company is 'x'\""
            ),
        ),
        (
            "V1 client on the LongJump backend: the caller's company",
            format!("curl -s {h} {gateway}/lj/companies"),
        ),
        (
            "V1 customers from LongJump, paged",
            format!(
                "curl -s {h} '{gateway}/lj/companies/{lj}/customers?maxResults=2&shouldReturnCount=true'"
            ),
        ),
        (
            "V1 client on Fusion resellers: the caller's company",
            format!("curl -s {h} {gateway}/fusion/companies"),
        ),
        (
            "V1 customers from Fusion, a page at a time (Fusion's `next` inside the V1 token)",
            format!(
                "curl -s {h} '{gateway}/fusion/companies/{fu}/customers?maxResults=1&shouldReturnCount=true'"
            ),
        ),
        (
            "Suspend a Fusion reseller (its suspension profile)",
            format!(
                "curl -s -X PATCH {h} {gateway}/fusion/companies/{}/disable",
                crate::demo::fusion::reseller_id(10)
            ),
        ),
    ];
    let mut out = format!(
        "Rosetta demo\n  gateway    {gateway}\n  appdirect  {appdirect} (sample)\n  redapi     {redapi} (sample, OAuth2)\n  longjump   {longjump} (sample, XML)\n  fusion     {} (sample, bearer)\n  API key    {key}   (user demo, company {})\n\nTry:\n",
        urls.fusion,
        crate::demo::DEMO_COMPANY_KEY
    );
    for (what, line) in lines {
        out.push_str(&format!("  # {what}\n  {line}\n"));
    }
    out.push_str("\nCtrl-C stops it (in-flight requests are drained).\n");
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}
