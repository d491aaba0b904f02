//! Issue 23's spike: jaq at its best against the direct evaluator, on the engine bench's
//! filters and inputs, in one criterion run.
//!
//! jaq's best setup here: the context parsed from upstream bytes straight into jaq_json's
//! value (its own reader, no serde_json in between), each filter compiled once, and the
//! definitions the direct evaluator has special ops for (`select`, `map`, `join`, `add`,
//! `type`, `not`, `true`/`false`/`null`, `empty`, `max`, `keys`, `to_entries`,
//! `from_entries`) replaced by native Rust filters given through `with_funs`. Two pairs
//! per filter: the run alone (each engine's context already in its own value type), and
//! bytes to bytes (parse, run, write the answer as JSON); and jaq as it runs a filter off
//! the plan today, for scale.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use jaq_core::box_iter::box_once;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Bind, Compiler, Ctx, Exn, Native, ValT, Vars, data, unwrap_valr};
use jaq_json::{Map, Val};
use rosetta::mapping::jq::JqFilter;
use serde_json::Value;

mod fixtures;

type Data = data::JustLut<Val>;

/// Definitions of jq's library the native filters below stand in for.
const NATIVE: &[&str] = &[
    "true",
    "false",
    "null",
    "empty",
    "not",
    "type",
    "select",
    "map",
    "join",
    "add",
    "max",
    "keys",
    "to_entries",
    "from_entries",
];

fn f() -> Box<[Bind]> {
    [Bind::Fun(())].into()
}

fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

/// Native stand-ins for library definitions (each as jaq's definition answers for the
/// inputs the bench gives; a real port would match every error text too).
fn natives() -> Vec<Fun<Data>> {
    vec![
        ("true", v(0), Native::new(|_| box_once(Ok(Val::Bool(true))))),
        (
            "false",
            v(0),
            Native::new(|_| box_once(Ok(Val::Bool(false)))),
        ),
        ("null", v(0), Native::new(|_| box_once(Ok(Val::Null)))),
        ("empty", v(0), Native::new(|_| Box::new(std::iter::empty()))),
        (
            "not",
            v(0),
            Native::new(|cv| box_once(Ok(Val::Bool(!cv.1.as_bool())))),
        ),
        (
            "type",
            v(0),
            Native::new(|cv| box_once(Ok(Val::utf8_str(type_name(&cv.1).as_bytes().to_vec())))),
        ),
        (
            "select",
            f(),
            Native::new(|mut cv| {
                let (f, fc) = cv.0.pop_fun();
                let x = cv.1;
                Box::new(f.run((fc, x.clone())).filter_map(move |r| match r {
                    Ok(b) => b.as_bool().then(|| Ok(x.clone())),
                    Err(e) => Some(Err(e)),
                }))
            }),
        ),
        (
            "map",
            f(),
            Native::new(|mut cv| {
                let (f, fc) = cv.0.pop_fun();
                let mut out = Vec::new();
                for x in cv.1.values() {
                    let x = match x {
                        Ok(x) => x,
                        Err(e) => return box_once(Err(Exn::from(e))),
                    };
                    for y in f.run((fc.clone(), x)) {
                        match y {
                            Ok(y) => out.push(y),
                            Err(e) => return box_once(Err(e)),
                        }
                    }
                }
                box_once(Ok(Val::Arr(out.into())))
            }),
        ),
        (
            "join",
            v(1),
            Native::new(|mut cv| {
                let sep = cv.0.pop_var();
                let mut text = Vec::new();
                let sep = match &sep {
                    Val::TStr(s) | Val::BStr(s) => s.to_vec(),
                    _ => return box_once(Err(Exn::from(jaq_core::Error::typ(sep, "string")))),
                };
                for (i, x) in cv.1.values().enumerate() {
                    let x = match x {
                        Ok(x) => x,
                        Err(e) => return box_once(Err(Exn::from(e))),
                    };
                    if i > 0 {
                        text.extend_from_slice(&sep);
                    }
                    match x {
                        Val::TStr(s) | Val::BStr(s) => text.extend_from_slice(&s),
                        other => text.extend_from_slice(other.to_string().as_bytes()),
                    }
                }
                box_once(Ok(Val::utf8_str(text)))
            }),
        ),
        (
            "add",
            v(0),
            Native::new(|cv| {
                let mut acc = Val::Null;
                for x in cv.1.values() {
                    match x.and_then(|x| acc.clone() + x) {
                        Ok(v) => acc = v,
                        Err(e) => return box_once(Err(Exn::from(e))),
                    }
                }
                box_once(Ok(acc))
            }),
        ),
        (
            "max",
            v(0),
            Native::new(|cv| {
                let mut best: Option<Val> = None;
                for x in cv.1.values() {
                    match x {
                        Ok(x) => {
                            if best.as_ref().is_none_or(|b| &x >= b) {
                                best = Some(x);
                            }
                        }
                        Err(e) => return box_once(Err(Exn::from(e))),
                    }
                }
                box_once(Ok(best.unwrap_or(Val::Null)))
            }),
        ),
        (
            "keys",
            v(0),
            Native::new(|cv| {
                let ks: Result<Vec<Val>, _> =
                    cv.1.key_values().map(|kv| kv.map(|(k, _)| k)).collect();
                box_once(
                    ks.map(|mut ks| {
                        ks.sort();
                        Val::Arr(ks.into())
                    })
                    .map_err(Exn::from),
                )
            }),
        ),
        (
            "to_entries",
            v(0),
            Native::new(|cv| {
                let mut out = Vec::new();
                for kv in cv.1.key_values() {
                    match kv {
                        Ok((k, x)) => {
                            let mut m = Map::default();
                            m.insert(Val::utf8_str(b"key".to_vec()), k);
                            m.insert(Val::utf8_str(b"value".to_vec()), x);
                            out.push(Val::obj(m));
                        }
                        Err(e) => return box_once(Err(Exn::from(e))),
                    }
                }
                box_once(Ok(Val::Arr(out.into())))
            }),
        ),
        (
            "from_entries",
            v(0),
            Native::new(|cv| {
                let key = Val::utf8_str(b"key".to_vec());
                let value = Val::utf8_str(b"value".to_vec());
                let mut m = Map::default();
                for x in cv.1.values() {
                    let r = x.and_then(|x| Ok((x.clone().index(&key)?, x.index(&value)?)));
                    match r {
                        Ok((k, x)) => {
                            m.insert(k, x);
                        }
                        Err(e) => return box_once(Err(Exn::from(e))),
                    }
                }
                box_once(Ok(Val::obj(m)))
            }),
        ),
    ]
}

/// `code` after `prelude`, compiled with the library minus what [`natives`] replaces.
fn compile_best(prelude: &str, code: &str) -> jaq_core::Filter<Data> {
    let code = format!("{prelude}\n{code}");
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .filter(|d| !NATIVE.contains(&d.name));
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| !NATIVE.contains(name))
        .chain(natives());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: &code,
                path: (),
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn first(f: &jaq_core::Filter<Data>, input: Val) -> Val {
    let ctx = Ctx::<Data>::new(&f.lut, Vars::new([]));
    let mut out = f.id.run((ctx, input)).map(unwrap_valr);
    out.next().unwrap().unwrap()
}

/// One filter, both engines, the run alone and bytes to bytes.
fn pair(c: &mut Criterion, name: &str, prelude: &str, direct: &JqFilter, ctx: &Value) {
    assert!(direct.is_native(), "{name}: the direct evaluator runs it");
    let best = compile_best(prelude, direct.source());
    let bytes = serde_json::to_vec(ctx).unwrap();
    let val = jaq_json::read::parse_single(&bytes).unwrap();
    // The two answer the same before either is timed.
    let a = direct.run(ctx).unwrap();
    let b: Value = serde_json::from_str(&first(&best, val.clone()).to_string()).unwrap();
    assert_eq!(a, b, "{name}");

    let mut g = c.benchmark_group(format!("spike: {name}"));
    g.bench_function("direct, run", |bn| {
        bn.iter(|| direct.run(black_box(ctx)).unwrap())
    });
    // jaq as a filter off the plan runs today: the context converted in, the answer out.
    g.bench_function("jaq as shipped, run", |bn| {
        bn.iter(|| direct.run_jaq(black_box(ctx)).unwrap())
    });
    g.bench_function("jaq best, run", |bn| {
        bn.iter(|| first(&best, black_box(&val).clone()))
    });
    g.bench_function("direct, bytes to bytes", |bn| {
        bn.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            serde_json::to_vec(&direct.run(&v).unwrap()).unwrap()
        })
    });
    g.bench_function("jaq best, bytes to bytes", |bn| {
        bn.iter(|| {
            let v = jaq_json::read::parse_single(black_box(&bytes)).unwrap();
            let out = first(&best, v);
            let mut w = Vec::new();
            jaq_json::write::write(&mut w, &Default::default(), 0, &out).unwrap();
            w
        })
    });
    g.finish();
}

fn spike(c: &mut Criterion) {
    let catalog = fixtures::bench_catalog();
    let transform = JqFilter::compile(fixtures::COMPANY_TRANSFORM).unwrap();
    pair(
        c,
        "company transform",
        "",
        &transform,
        &fixtures::appdirect_company(),
    );

    let customers = fixtures::route(&catalog, "redapi-v1-appdirect", "customers.list");
    let prelude = customers.pack.prelude.clone();
    let page_filter = fixtures::compute_step(&customers, "page");
    let ctx = fixtures::customers_page_ctx();
    pair(c, "customers page (500)", &prelude, page_filter, &ctx);
    pair(
        c,
        "customers answer (30)",
        &prelude,
        customers.plan.response.jq.as_ref().unwrap(),
        &fixtures::customers_answer_ctx(),
    );

    let users = fixtures::route(&catalog, "redapi-v1-appdirect", "users.list");
    pair(
        c,
        "users answer (30)",
        &users.pack.prelude,
        users.plan.response.jq.as_ref().unwrap(),
        &fixtures::users_answer_ctx(),
    );

    let search = fixtures::route(&catalog, "redapi-v1-longjump", "companies.search");
    pair(
        c,
        "LongJump search (30)",
        &search.pack.prelude,
        search.plan.response.jq.as_ref().unwrap(),
        &fixtures::longjump_search_ctx(),
    );
}

criterion_group!(benches, spike);
criterion_main!(benches);
