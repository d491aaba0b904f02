//! `rosetta check`: the shipped configuration loads, and each kind of broken pack is refused
//! with a message naming the file, the route and the line.

use std::path::{Path, PathBuf};
use std::process::Command;

use rosetta::config::Config;
use rosetta::mapping::pack::{LoadError, load_catalog};

const BASE_CONFIG: &str = r#"
mappings_dir = "mappings"
packs = ["p"]
[upstreams.appdirect]
url = "http://127.0.0.1:1"
[upstreams.other]
url = "http://127.0.0.1:2"
[rate_limits.default]
burst = 20
rate = "5/s"
"#;

const PACK: &str = r#"
[pack]
client_dialect = "redapi-v1"
service = "TEST"
upstreams = ["appdirect"]
[reach]
root = { call = "GET appdirect /api/account/v2/companies/externalId:{principal.company}", id = ".id" }
children = { call = "GET appdirect /api/appReseller/v1/companyAssociations", query = { resellerCompanyId = "{node}" }, ids = "[.content[]?.customerCompany.id]" }
"#;

const GOOD_ROUTE: &str = r#"
[[route]]
id = "companies.get"
match = "GET /companies/{companyId}"
tenancy = { ids = ["path.companyId"] }
[[route.step]]
call = "GET appdirect /api/account/v2/companies/{companyId}"
[route.response]
jq = "{companyId: .steps.step0.id}"
"#;

/// Writes a config and a pack `p` with `routes.toml`, returns the config path.
fn setup(dir: &Path, pack: &str, routes: &str) -> PathBuf {
    let p = dir.join("mappings/p");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("pack.toml"), pack).unwrap();
    std::fs::write(p.join("routes.toml"), routes).unwrap();
    let cfg = dir.join("rosetta.toml");
    std::fs::write(&cfg, BASE_CONFIG).unwrap();
    cfg
}

fn errors(pack: &str, routes: &str) -> Vec<LoadError> {
    load(pack, routes).expect_err("the pack must be refused").0
}

fn load(
    pack: &str,
    routes: &str,
) -> Result<rosetta::mapping::pack::Catalog, rosetta::mapping::pack::LoadErrors> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load_with_env(&setup(dir.path(), pack, routes), Vec::new()).unwrap();
    load_catalog(&cfg)
}

fn assert_one(errs: &[LoadError], route: &str, line: usize, needle: &str) {
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = &errs[0];
    assert!(e.file.ends_with("routes.toml"), "{e}");
    assert_eq!(e.route.as_deref(), Some(route), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert!(
        e.to_string().contains(needle),
        "`{e}` should mention `{needle}`"
    );
    assert!(e.to_string().contains("routes.toml:"), "{e}");
}

#[test]
fn a_good_pack_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load_with_env(&setup(dir.path(), PACK, GOOD_ROUTE), Vec::new()).unwrap();
    let catalog = load_catalog(&cfg).unwrap();
    assert_eq!(catalog.routes.len(), 1);
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let routes = GOOD_ROUTE.replace("[route.response]", "colour = \"blue\"\n[route.response]");
    let errs = errors(PACK, &routes);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("colour"), "{}", errs[0]);
    assert_eq!(errs[0].line, Some(8));
}

#[test]
fn undefined_upstreams_are_refused() {
    let routes = GOOD_ROUTE.replace("GET appdirect", "GET nowhere");
    assert_one(
        &errors(PACK, &routes),
        "companies.get",
        2,
        "upstream `nowhere`",
    );
    // Defined in the config but not listed by the pack.
    let routes = GOOD_ROUTE.replace("GET appdirect", "GET other");
    assert_one(
        &errors(PACK, &routes),
        "companies.get",
        2,
        "not listed in the pack",
    );
}

#[test]
fn undefined_policies_are_refused() {
    let routes = GOOD_ROUTE.replace("match = ", "rate_limit = \"gold\"\nmatch = ");
    assert_one(&errors(PACK, &routes), "companies.get", 2, "policy `gold`");
}

#[test]
fn path_variables_used_but_not_matched_are_refused() {
    let routes = GOOD_ROUTE.replace(
        "companies/{companyId}\"\n[route.response]",
        "companies/{customerId}\"\n[route.response]",
    );
    assert_one(&errors(PACK, &routes), "companies.get", 2, "{customerId}");
}

#[test]
fn jq_that_does_not_compile_is_refused() {
    let routes = GOOD_ROUTE.replace(
        "{companyId: .steps.step0.id}",
        "{companyId: .steps.step0.id",
    );
    assert_one(
        &errors(PACK, &routes),
        "companies.get",
        2,
        "jq filter does not compile",
    );
}

#[test]
fn colliding_routes_are_refused() {
    let routes = format!(
        "{GOOD_ROUTE}\n{}",
        GOOD_ROUTE
            .replace("companies.get", "companies.again")
            .replace("{companyId}", "{id}")
            .replace("path.companyId", "path.id")
    );
    let errs = errors(PACK, &routes);
    assert_one(
        &errs,
        "companies.again",
        12,
        "collides with route `companies.get`",
    );
}

#[test]
fn references_to_later_steps_are_refused() {
    let routes = r#"
[[route]]
id = "r"
match = "GET /x/{id}"
tenancy = { other = ["path.id"] }
[[route.step]]
name = "a"
call = "GET appdirect /a/{steps.b.id}"
[[route.step]]
name = "b"
call = "GET appdirect /b/{id}"
"#;
    assert_one(
        &errors(PACK, routes),
        "r",
        2,
        "does not run before this one",
    );
}

#[test]
fn unknown_dialects_are_refused() {
    let errs = errors(&PACK.replace("redapi-v1", "soap"), GOOD_ROUTE);
    assert!(
        errs.iter().any(|e| e.file.ends_with("pack.toml")
            && e.message.contains("unknown client_dialect `soap`")),
        "{errs:#?}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let routes = format!(
        "{}\n{}",
        GOOD_ROUTE.replace("GET appdirect", "GET nowhere"),
        GOOD_ROUTE
            .replace("companies.get", "two")
            .replace("GET /companies", "GET /other")
            .replace(".id}\"", ".id\"")
    );
    assert_eq!(errors(PACK, &routes).len(), 2);
}

#[test]
fn the_shipped_configuration_loads_all_thirty_v1_routes() {
    let cfg = Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new()).unwrap();
    let catalog = load_catalog(&cfg).unwrap();
    let v1 = catalog
        .routes
        .iter()
        .filter(|r| r.pack.name == "redapi-v1-appdirect")
        .count();
    assert_eq!(v1, 30);
}

#[test]
fn environment_variables_override_the_file() {
    let env = vec![
        ("ROSETTA__LISTEN".to_owned(), "127.0.0.1:9999".to_owned()),
        (
            "ROSETTA__UPSTREAMS__APPDIRECT__URL".to_owned(),
            "http://127.0.0.1:7777".to_owned(),
        ),
    ];
    let cfg = Config::load_with_env(Path::new("config/rosetta.toml"), env).unwrap();
    assert_eq!(cfg.listen, "127.0.0.1:9999");
    assert_eq!(cfg.upstreams["appdirect"].url, "http://127.0.0.1:7777");
}

#[test]
fn the_check_command_exits_non_zero_on_a_broken_pack() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(
        dir.path(),
        PACK,
        &GOOD_ROUTE.replace("GET appdirect", "GET nowhere"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes.toml:2: route `companies.get`"),
        "{stderr}"
    );

    let ok = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config", "config/rosetta.toml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("30 routes"));
}

/// The good route with an answer built by a fold, which the filter plan has no operation for.
fn with_jaq_filter() -> String {
    GOOD_ROUTE.replace(
        "{companyId: .steps.step0.id}",
        "{companyId: .steps.step0.id, n: (reduce .steps.step0.ids[]? as $i (0; . + 1))}",
    )
}

#[test]
fn the_check_command_lists_the_filters_that_run_on_jaq() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), PACK, &with_jaq_filter());
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("jaq: ")
            && stdout.contains(
                "routes.toml:2: route `companies.get`: response.jq runs on jaq (`reduce`/`foreach`)"
            ),
        "{stdout}"
    );
    assert!(stdout.contains(", 1 on jaq"), "{stdout}");

    // The shipped packs' filters all run on the plan.
    let ok = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config", "config/rosetta.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains(", 0 on jaq") && !stdout.contains("jaq: "),
        "{stdout}"
    );
}

#[test]
fn strict_jq_refuses_a_filter_that_runs_on_jaq() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), PACK, &with_jaq_filter());
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--strict-jq", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("routes.toml:2: route `companies.get`: response.jq runs on jaq"),
        "{stderr}"
    );

    // The configuration key refuses it wherever packs load (serve, reload, check).
    std::fs::write(&cfg, format!("strict_jq = true\n{BASE_CONFIG}")).unwrap();
    let strict = Config::load_with_env(&cfg, Vec::new()).unwrap();
    let errs = load_catalog(&strict).expect_err("strict_jq refuses it").0;
    assert_one(&errs, "companies.get", 2, "runs on jaq");
    let ok = setup(dir.path(), PACK, GOOD_ROUTE);
    std::fs::write(&ok, format!("strict_jq = true\n{BASE_CONFIG}")).unwrap();
    assert!(load_catalog(&Config::load_with_env(&ok, Vec::new()).unwrap()).is_ok());
}

#[test]
fn invalidating_an_unknown_route_of_an_enabled_pack_is_refused() {
    let write = |target: &str| {
        format!(
            "{GOOD_ROUTE}\n[[route]]\nid = \"companies.put\"\nmatch = \"PUT /companies/{{companyId}}\"\ntenancy = {{ ids = [\"path.companyId\"] }}\ninvalidates = [\"{target}\"]\n[[route.step]]\ncall = \"PUT appdirect /api/account/v2/companies/{{companyId}}\"\n[route.response]\njq = \"null\"\n"
        )
    };
    // A bare id names a route of the same pack; `pack:route` any enabled pack's.
    assert!(load(PACK, &write("companies.get")).is_ok());
    assert!(load(PACK, &write("p:companies.get")).is_ok());
    // A pack that is not enabled caches nothing: naming its routes is harmless.
    assert!(load(PACK, &write("elsewhere:companies.get")).is_ok());
    for bad in ["companies.gone", "p:companies.gone"] {
        let errs = errors(PACK, &write(bad));
        assert_one(&errs, "companies.put", 11, "invalidates unknown route");
    }
}

/// A pack with a second route in `routes.toml` after the good one (whose line is 11).
fn with_route(route: &str) -> String {
    format!("{GOOD_ROUTE}\n{route}")
}

/// `route`, added after a good one, is refused with one error at `line` naming `needle`.
fn refused_after_good_route(route: &str, id: &str, line: usize, needle: &str) {
    assert_one(&errors(PACK, &with_route(route)), id, line, needle);
}

#[test]
fn a_route_taking_an_id_it_does_not_declare_is_refused() {
    // A path variable: every one must be declared, company id or not.
    let undeclared = r#"[[route]]
id = "customers.get"
match = "GET /companies/{companyId}/customers/{customerId}"
tenancy = { ids = ["path.companyId"] }
[[route.step]]
call = "GET appdirect /api/account/v2/companies/{customerId}"
"#;
    let errs = errors(PACK, &with_route(undeclared));
    assert_one(
        &errs,
        "customers.get",
        11,
        "reads `path.customerId`, an id-like input",
    );
    // No declaration at all.
    let bare = GOOD_ROUTE.replace("tenancy = { ids = [\"path.companyId\"] }\n", "");
    assert_one(&errors(PACK, &bare), "companies.get", 2, "`path.companyId`");
    // An id-like query parameter a template reads, and a body field a filter reads.
    let query = r#"[[route]]
id = "users.list"
match = "GET /users"
[[route.step]]
call = "GET appdirect /api/account/v2/companies/{query.companyId}/memberships"
"#;
    refused_after_good_route(query, "users.list", 11, "`query.companyId`");
    // (A body read whole, as `{name: .body.name}` passes `name` on, needs a `tenancy` at all.)
    let body = r#"[[route]]
id = "tenant.create"
match = "POST /tenants"
tenancy = {}
[[route.step]]
call = "POST appdirect /api/account/v2/companies"
body = '{name: .body.name, parent: .body.parentId}'
"#;
    refused_after_good_route(body, "tenant.create", 11, "`body.parentId`");
    // Declared as not a company id: accepted, and not checked.
    let other = undeclared.replace(
        "tenancy = { ids = [\"path.companyId\"] }",
        "tenancy = { ids = [\"path.companyId\"], other = [\"path.customerId\"] }",
    );
    assert!(load(PACK, &with_route(&other)).is_ok());
}

#[test]
fn company_ids_need_a_reach_and_a_required_query_id() {
    let no_reach = &PACK[..PACK.find("[reach]").unwrap()];
    assert_one(
        &errors(no_reach, GOOD_ROUTE),
        "companies.get",
        2,
        "declares no [reach]",
    );
    let optional = r#"[[route]]
id = "users.list"
match = "GET /users"
tenancy = { ids = ["query.companyId"] }
[[route.step]]
call = "GET appdirect /api/account/v2/companies/{query.companyId}/memberships"
"#;
    refused_after_good_route(optional, "users.list", 11, "required = true");
    let required = optional.replace(
        "tenancy",
        "params = { companyId = { required = true } }\ntenancy",
    );
    assert!(load(PACK, &with_route(&required)).is_ok());
}

#[test]
fn a_list_says_what_it_lists_and_is_not_paged_before_the_reach() {
    let list = r#"[[route]]
id = "companies.search"
match = "GET /search"
paged = true
[[route.step]]
name = "all"
call = "GET appdirect /api/account/v2/companies"
[route.response]
jq = '{items: [.steps.all.content[] | {companyId: .id}], total: null}'
"#;
    refused_after_good_route(list, "companies.search", 11, "tenancy.items");
    let items = list.replace(
        "paged = true",
        "paged = true\ntenancy = { items = \"companyId\" }",
    );
    assert!(load(PACK, &with_route(&items)).is_ok());
    let paged_upstream = items.replace(
        "call = \"GET appdirect /api/account/v2/companies\"",
        "call = \"GET appdirect /api/account/v2/companies\"\nquery = { page = \"{page.index}\" }",
    );
    refused_after_good_route(
        &paged_upstream,
        "companies.search",
        11,
        "must not read `page`",
    );
    // A list that belongs to no company says so.
    let catalog = list.replace("paged = true", "paged = true\ntenancy = { catalog = true }");
    assert!(load(PACK, &with_route(&catalog)).is_ok());
}

#[test]
fn roles_are_known_and_an_auditor_never_writes() {
    let write = r#"[[route]]
id = "companies.disable"
match = "PATCH /companies/{companyId}/disable"
tenancy = { ids = ["path.companyId"] }
roles = ["AUDITOR", "ADMIN"]
[[route.step]]
call = "PATCH appdirect /api/account/v2/companies/{companyId}"
"#;
    refused_after_good_route(write, "companies.disable", 11, "AUDITOR never writes");
    let unknown = write.replace("\"AUDITOR\", ", "\"ROOT\", ");
    refused_after_good_route(&unknown, "companies.disable", 11, "`ROOT`");
    let admin_only = write.replace("\"AUDITOR\", ", "");
    assert!(load(PACK, &with_route(&admin_only)).is_ok());
}

/// `rosetta check` on `cfg`, with `env` set: (success, stderr).
fn check_with_env(cfg: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config"])
        .arg(cfg)
        .envs(env.iter().copied())
        .env_remove("ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_check_command_warns_about_each_secret_written_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), PACK, GOOD_ROUTE);
    let inline = format!(
        "{BASE_CONFIG}[admin]\nbootstrap_user = \"root\"\nbootstrap_password = \"pw-in-the-file\"\n\
         [upstreams.other.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"secret-in-the-file\"\n"
    );
    std::fs::write(&cfg, &inline).unwrap();
    let (ok, stderr) = check_with_env(&cfg, &[]);
    assert!(ok, "a warning, not an error: {stderr}");
    for (key, var) in [
        (
            "admin.bootstrap_password",
            "ROSETTA__ADMIN__BOOTSTRAP_PASSWORD",
        ),
        (
            "upstreams.other.auth.password",
            "ROSETTA__UPSTREAMS__OTHER__AUTH__PASSWORD",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning: ") && l.contains(key) && l.contains(var)),
            "{stderr}"
        );
    }
    assert!(
        !stderr.contains("in-the-file"),
        "the warning never repeats the secret: {stderr}"
    );

    // The same secrets from the environment: nothing to say.
    std::fs::write(
        &cfg,
        format!("{BASE_CONFIG}[upstreams.other.auth]\ntype = \"basic\"\nusername = \"u\"\n"),
    )
    .unwrap();
    let (ok, stderr) = check_with_env(
        &cfg,
        &[
            ("ROSETTA__ADMIN__BOOTSTRAP_USER", "root"),
            ("ROSETTA__ADMIN__BOOTSTRAP_PASSWORD", "pw"),
            ("ROSETTA__UPSTREAMS__OTHER__AUTH__PASSWORD", "pw"),
        ],
    );
    assert!(ok && !stderr.contains("warning"), "{stderr}");
    // Left out of both, the upstream's secret is named as missing (serve refuses it).
    let (ok, stderr) = check_with_env(&cfg, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: upstreams.other.auth.password is not set")
            && stderr.contains("ROSETTA__UPSTREAMS__OTHER__AUTH__PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_configuration_holds_no_secret_and_serve_wants_them_from_the_environment() {
    let shipped = std::fs::read_to_string("config/rosetta.toml").unwrap();
    assert!(!shipped.contains("change-me"));
    assert_eq!(
        rosetta::config::secrets::inline(&shipped),
        Vec::<String>::new()
    );
    let (ok, stderr) = check_with_env(Path::new("config/rosetta.toml"), &[]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("is written in"), "{stderr}");

    // `serve` refuses to start without the upstream's secret, naming where to give it, and
    // creates nothing (no store file).
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["serve", "--config", "config/rosetta.toml"])
        .env("ROSETTA__LISTEN", "127.0.0.1:0")
        .env("ROSETTA__ADMIN_LISTEN", "127.0.0.1:0")
        .env("ROSETTA__STORE__PATH", &db)
        .env_remove("ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ROSETTA__UPSTREAMS__REDAPI__AUTH__CLIENT_SECRET"),
        "{stderr}"
    );
    assert!(!db.exists(), "nothing was created");
}

#[test]
fn the_audit_queue_and_retention_default_and_an_empty_queue_is_refused() {
    let cfg = Config::load_with_env(Path::new("config/rosetta.toml"), Vec::new()).unwrap();
    assert_eq!((cfg.store.audit_queue, cfg.store.audit_days), (100_000, 90));
    let env = |k: &str, v: &str| vec![(format!("ROSETTA__STORE__{k}"), v.to_owned())];
    let cfg =
        Config::load_with_env(Path::new("config/rosetta.toml"), env("AUDIT_DAYS", "0")).unwrap();
    assert_eq!(cfg.store.audit_days, 0, "0 keeps rows forever");
    let err = Config::load_with_env(Path::new("config/rosetta.toml"), env("AUDIT_QUEUE", "0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.audit_queue"), "{err}");
}

#[test]
fn upstream_paging_refusals_unsupported_and_vars_are_checked() {
    // `upstream_pages` on a route Rosetta does not page, and naming no call step.
    let unpaged = r#"[[route]]
id = "customers.list"
match = "GET /companies/{companyId}/customers"
tenancy = { ids = ["path.companyId"] }
upstream_pages = { step = "list", scheme = "fusion", list = "resellers" }
[[route.step]]
name = "list"
call = "GET appdirect /api/account/v2/companies/{companyId}"
"#;
    refused_after_good_route(unpaged, "customers.list", 11, "for a `paged` route");
    let no_step = unpaged
        .replace("upstream_pages = {", "paged = true\nupstream_pages = {")
        .replace("step = \"list\"", "step = \"nope\"")
        + "[route.response]\njq = '{items: [], total: 0}'\n";
    refused_after_good_route(&no_step, "customers.list", 11, "upstream_pages.step `nope`");
    let scheme = unpaged
        .replace("upstream_pages = {", "paged = true\nupstream_pages = {")
        .replace("\"fusion\"", "\"appdirect\"")
        + "[route.response]\njq = '{items: [], total: 0}'\n";
    refused_after_good_route(&scheme, "customers.list", 11, "pages by token");
    // `refusals` must map error statuses.
    let refusal = GOOD_ROUTE
        .replace("companies.get", "companies.other")
        .replace("{companyId}\"\ntenancy", "{companyId}/x\"\ntenancy")
        .replace(
            "call = \"GET appdirect /api/account/v2/companies/{companyId}\"",
            "call = \"GET appdirect /api/account/v2/companies/{companyId}\"\nrefusals = { \"400\" = 200 }",
        );
    refused_after_good_route(&refusal, "companies.other", 12, "error statuses");
    // An `unsupported` route makes no calls.
    let unsupported = r#"[[route]]
id = "companies.delete"
match = "DELETE /companies/{companyId}"
tenancy = { ids = ["path.companyId"] }
unsupported = "no delete here"
[[route.step]]
call = "DELETE appdirect /api/account/v2/companies/{companyId}"
"#;
    refused_after_good_route(unsupported, "companies.delete", 11, "makes no calls");
    // A `{vars.…}` the upstream's config does not give.
    let var = GOOD_ROUTE
        .replace("companies.get", "companies.var")
        .replace("{companyId}\"\ntenancy", "{companyId}/v\"\ntenancy")
        .replace(
            "/api/account/v2/companies/{companyId}\"",
            "/api/{vars.appdirect.tenant}/companies/{companyId}\"",
        );
    refused_after_good_route(&var, "companies.var", 12, "is not set");
}

#[test]
fn the_check_command_names_a_bad_cluster_setting() {
    for (var, value, named) in [
        (
            "ROSETTA__CLUSTER__REDIS_URL",
            "http://127.0.0.1:6379",
            "cluster.redis_url",
        ),
        ("ROSETTA__CLUSTER__ON_REDIS_ERROR", "maybe", "maybe"),
        ("ROSETTA__CLUSTER__LEASE", "0s", "cluster.lease"),
        ("ROSETTA__CLUSTER__KEY_PREFIX", "{x}", "cluster.key_prefix"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
            .args(["check", "--config", "config/rosetta.toml"])
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} passed the check");
        assert!(stderr.contains(named), "{var}={value}: {stderr}");
    }
    // A good one passes, its password never printed.
    let out = Command::new(env!("CARGO_BIN_EXE_rosetta"))
        .args(["check", "--config", "config/rosetta.toml"])
        .env(
            "ROSETTA__CLUSTER__REDIS_URL",
            "redis://:hunter2@127.0.0.1:6379/0",
        )
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn a_named_list_is_for_a_dialect_whose_lists_name_their_records() {
    let list = r#"[[route]]
id = "companies.search"
match = "GET /search"
paged = true
tenancy = { items = "companyId" }
[[route.step]]
name = "all"
call = "GET appdirect /api/account/v2/companies"
[route.response]
jq = '{items: [.steps.all.content[] | {companyId: .id}], total: null}'
list = "resellers"
"#;
    // A V1 pack's lists are `results`: the key would be ignored, so it is refused.
    refused_after_good_route(list, "companies.search", 11, "response.list");
    // A Fusion client's list takes it (and only a paged route's).
    let fusion = PACK.replace(
        "client_dialect = \"redapi-v1\"",
        "client_dialect = \"fusion\"",
    );
    assert!(load(&fusion, &with_route(list)).is_ok());
    let unpaged = list.replace("paged = true\n", "");
    let e = errors(&fusion, &with_route(&unpaged));
    assert!(
        e.iter()
            .any(|e| e.message.contains("response.list needs a `paged` route")),
        "{e:?}"
    );
}
