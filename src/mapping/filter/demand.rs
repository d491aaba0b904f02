//! What a filter can read of its input, found from its plan or its parse.
//!
//! A route builds only the parts of its context its filters look at, and parses an
//! upstream's answer only as far as they read it ([`crate::mapping::project`]). Two answers
//! come from here: [`Program::demand`], the paths into the input a plan can read (mirroring
//! [`super::eval`] term by term), and [`scan`], the top-level keys any parsed filter reads
//! (filters on jaq included).

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Pattern, Term};
use jaq_core::path::Part;

use super::plan::{Builtin, Node, Piece, Program, Step};
use crate::mapping::project::{Demand, Seg};

impl Program {
    /// What the filter can read of its input ([`crate::mapping::project`]): every value it
    /// outputs, compares, adds, measures or prints is read whole; a value it only walks
    /// into, tests for truth or asks the type of is read in part.
    pub fn demand(&self) -> Demand {
        let mut d = Demand::default();
        let outs = reads(&self.root, &vec![Vec::new()], &mut Vec::new(), &mut d);
        whole_all(&outs, &mut d);
        d
    }
}

/// Paths into the filter's input that a term's outputs may be (none: values it makes).
type Origins = Vec<Vec<Seg>>;

fn whole_all(o: &Origins, d: &mut Demand) {
    o.iter().for_each(|p| d.whole(p));
}

fn touch_all(o: &Origins, d: &mut Demand) {
    o.iter().for_each(|p| d.touch(p));
}

fn extend(o: &Origins, seg: &Seg, d: &mut Demand) -> Origins {
    o.iter()
        .map(|p| {
            let mut q = p.clone();
            q.push(seg.clone());
            // Walking into a value reads its kind (a key of an array fails) even when what
            // is found there is never used.
            d.touch(&q);
            q
        })
        .collect()
}

/// The origins of `n`'s outputs when its input is one of `input`, the variable slots'
/// origins in `env`; what `n` reads on the way is added to `d`. Mirrors [`super::eval`].
fn reads(n: &Node, input: &Origins, env: &mut Vec<Origins>, d: &mut Demand) -> Origins {
    match n {
        Node::Id => input.clone(),
        Node::Lit(_) | Node::Empty => Vec::new(),
        Node::Var(i) => match env.get(*i) {
            Some(o) => o.clone(),
            // A slot the lowering did not bind (a run fails on it): nothing can be left out.
            None => {
                d.whole(&[]);
                Vec::new()
            }
        },
        Node::Interp(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(_) => {}
                    Piece::Term(t) => {
                        let o = reads(t, input, env, d);
                        whole_all(&o, d);
                    }
                }
            }
            Vec::new()
        }
        Node::Arr(t) => {
            let o = reads(t, input, env, d);
            whole_all(&o, d);
            Vec::new()
        }
        Node::Obj(entries) => {
            for (k, v) in entries {
                let ko = reads(k, input, env, d);
                whole_all(&ko, d);
                let vo = reads(v, input, env, d);
                whole_all(&vo, d);
            }
            Vec::new()
        }
        Node::Pipe(l, r) => {
            let lo = reads(l, input, env, d);
            reads(r, &lo, env, d)
        }
        Node::Bind(l, r) => {
            let lo = reads(l, input, env, d);
            env.push(lo);
            let out = reads(r, input, env, d);
            env.pop();
            out
        }
        Node::Comma(l, r) => {
            let mut out = reads(l, input, env, d);
            out.extend(reads(r, input, env, d));
            out
        }
        Node::Alt(l, r) => {
            let mut out = reads(l, input, env, d);
            touch_all(&out, d);
            out.extend(reads(r, input, env, d));
            out
        }
        Node::Logic(l, _, r) => {
            let lo = reads(l, input, env, d);
            touch_all(&lo, d);
            let ro = reads(r, input, env, d);
            touch_all(&ro, d);
            Vec::new()
        }
        Node::Cmp(l, _, r) | Node::Add(l, r) | Node::Div(l, r) | Node::Range(l, r) => {
            let lo = reads(l, input, env, d);
            whole_all(&lo, d);
            let ro = reads(r, input, env, d);
            whole_all(&ro, d);
            Vec::new()
        }
        Node::If(c, t, e) => {
            let co = reads(c, input, env, d);
            touch_all(&co, d);
            let mut out = reads(t, input, env, d);
            out.extend(reads(e, input, env, d));
            out
        }
        Node::Try(t) => reads(t, input, env, d),
        Node::Path(base, steps, indices) => {
            let mut at = reads(base, input, env, d);
            touch_all(&at, d);
            // Each computed index runs on the path's input, and is read whole.
            for f in indices {
                let fo = reads(f, input, env, d);
                whole_all(&fo, d);
            }
            for (step, _) in steps {
                at = match step {
                    Step::Key(k) => extend(&at, &Seg::Key(k.clone()), d),
                    Step::Index(_) => extend(&at, &Seg::Index, d),
                    Step::Iter => extend(&at, &Seg::Iter, d),
                    // A key, index or range computed from the path's input: any part may be
                    // read.
                    Step::Dyn(_) | Step::Slice(..) => {
                        whole_all(&at, d);
                        Vec::new()
                    }
                };
            }
            at
        }
        Node::Builtin(b) => {
            match b {
                Builtin::Not | Builtin::Type => touch_all(input, d),
                Builtin::Length
                | Builtin::ToString
                | Builtin::AsciiDowncase
                | Builtin::AsciiUpcase
                | Builtin::Floor
                | Builtin::ToDate
                | Builtin::ToNumber
                | Builtin::Reverse
                | Builtin::Max
                | Builtin::Sum
                | Builtin::Keys
                | Builtin::ToEntries
                | Builtin::FromEntries => whole_all(input, d),
            }
            Vec::new()
        }
        Node::Select(f) => {
            let fo = reads(f, input, env, d);
            touch_all(&fo, d);
            input.clone()
        }
        // What these output is made of their input, read whole.
        Node::Join(f) | Node::Contains(f) => {
            whole_all(input, d);
            let fo = reads(f, input, env, d);
            whole_all(&fo, d);
            Vec::new()
        }
        // An order outputs the elements themselves; `map` only walks into them.
        Node::SortBy(f) => {
            whole_all(input, d);
            reads_each(f, input, env, d)
        }
        Node::Map(f) => {
            touch_all(input, d);
            reads_each(f, input, env, d)
        }
    }
}

/// What `f`, run on each element of an `input`, reads; its outputs are kept, so read whole.
fn reads_each(f: &Node, input: &Origins, env: &mut Vec<Origins>, d: &mut Demand) -> Origins {
    let items = extend(input, &Seg::Iter, d);
    let fo = reads(f, &items, env, d);
    whole_all(&fo, d);
    Vec::new()
}

/// Collects the root keys `t` reads; `root` says whether `t`'s input is the filter's input.
pub(super) fn scan(t: &Term<&str>, root: bool, out: &mut Vec<String>) -> Result<(), ()> {
    let whole = |root: bool| if root { Err(()) } else { Ok(()) };
    match t {
        Term::Id | Term::Recurse => whole(root),
        Term::Num(_) | Term::Var(_) | Term::Break(_) => Ok(()),
        // `@json` and the like format their input.
        Term::Str(Some(_), _) => whole(root),
        Term::Str(None, parts) => {
            for part in parts {
                match part {
                    StrPart::Term(t) => scan(t, root, out)?,
                    StrPart::Str(_) | StrPart::Char(_) => {}
                }
            }
            Ok(())
        }
        Term::Arr(t) => t.iter().try_for_each(|t| scan(t, root, out)),
        Term::Obj(entries) => {
            for (k, v) in entries {
                match (k, v) {
                    (k, Some(v)) => {
                        scan(k, root, out)?;
                        scan(v, root, out)?;
                    }
                    (Term::Var(_), None) => {}
                    // `{a}` reads `.a`.
                    (Term::Str(None, parts), None) => match parts.as_slice() {
                        [StrPart::Str(key)] if root => out.push((*key).to_owned()),
                        _ => whole(root)?,
                    },
                    (_, None) => whole(root)?,
                }
            }
            Ok(())
        }
        Term::Neg(t) | Term::Label(_, t) => scan(t, root, out),
        Term::BinOp(l, op, r) => match op {
            // The right side reads what the left gives: the input only if the left is `.`.
            BinaryOp::Pipe(None) => {
                scan(l, root, out)?;
                scan(r, root && matches!(**l, Term::Id), out)
            }
            BinaryOp::Pipe(Some(Pattern::Var(_)))
            | BinaryOp::Comma
            | BinaryOp::Alt
            | BinaryOp::Or
            | BinaryOp::And
            | BinaryOp::Math(_)
            | BinaryOp::Cmp(_) => {
                scan(l, root, out)?;
                scan(r, root, out)
            }
            BinaryOp::Pipe(Some(Pattern::Arr(_) | Pattern::Obj(_)))
            | BinaryOp::Assign
            | BinaryOp::Update
            | BinaryOp::UpdateMath(_)
            | BinaryOp::UpdateAlt => whole(root),
        },
        Term::TryCatch(t, c) => {
            scan(t, root, out)?;
            // The handler's input is the error.
            c.iter().try_for_each(|c| scan(c, false, out))
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                scan(cond, root, out)?;
                scan(then, root, out)?;
            }
            otherwise.iter().try_for_each(|e| scan(e, root, out))
        }
        Term::Fold(..) | Term::Def(..) => whole(root),
        // Constants ignore their input; any other call may read it whole (its arguments
        // run on the same input, so they are covered by that).
        Term::Call(name, args) => {
            if args.is_empty() && matches!(*name, "null" | "true" | "false" | "empty") {
                Ok(())
            } else {
                whole(root)
            }
        }
        Term::Path(base, path) => {
            let mut parts = path.0.iter();
            if matches!(**base, Term::Id) && root {
                // `.k…`: only the first key is read of the input itself.
                match parts.next() {
                    Some((Part::Index(Term::Str(None, key)), _)) => match key.as_slice() {
                        [StrPart::Str(k)] => out.push((*k).to_owned()),
                        _ => return Err(()),
                    },
                    Some(_) | None => return Err(()),
                }
            } else {
                scan(base, root, out)?;
            }
            // Index expressions run on the path's input, not on the value being indexed.
            for (part, _) in parts {
                match part {
                    Part::Index(i) => scan(i, root, out)?,
                    Part::Range(from, to) => {
                        from.iter().chain(to).try_for_each(|t| scan(t, root, out))?;
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        COMPILED, SHIPPED, arb_input, context_filters, mutated_contexts, projected,
    };
    use super::super::translate;
    use crate::mapping::pack::Route;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    #[test]
    fn the_root_keys_a_filter_reads_are_known_or_it_reads_the_whole_input() {
        let r = |code: &str| translate("", code).roots;
        let keys = |k: &[&str]| Some(k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(r(".steps.s"), keys(&["steps"]));
        assert_eq!(
            r("(.steps.assoc.content[0].x // null) as $p | .steps.company | f($p)"),
            keys(&["steps"])
        );
        assert_eq!(r(".steps.t.tenant[0] | v1_company"), keys(&["steps"]));
        assert_eq!(
            r("{a: .path.id, b: .query[.principal.k]}"),
            keys(&["path", "principal", "query"])
        );
        assert_eq!(r("{principal}"), keys(&["principal"]));
        assert_eq!(
            r("if .body then null else \"\\(.page.size)\" end"),
            keys(&["body", "page"])
        );
        assert_eq!(r("try .a catch ."), keys(&["a"]));
        assert_eq!(r("1, true, empty"), keys(&[]));
        for whole in [
            ".",
            "..",
            "f",
            "tojson",
            ". as $c | $c.path",
            ".[0]",
            ".[]",
            ".a |= 1",
            "reduce .x[] as $i (0; .)",
            "def f: .; f",
            "(.a, .) | .b",
            "{(.a): .}",
            "@json",
            "@base64 \"\\(.a)\"",
            ". as [$x] | $x",
            "if . then 1 else 2 end",
            "length",
        ] {
            assert_eq!(r(whole), None, "{whole}");
        }
    }

    #[test]
    fn routes_build_only_the_context_their_templates_and_filters_read() {
        use crate::mapping::pack::ContextUse;
        let catalog = crate::mapping::pack::shipped_catalog();
        let uses = |pack: &str, id: &str| {
            catalog
                .routes
                .iter()
                .find(|r| r.pack.name == pack && &*r.id == id)
                .unwrap()
                .request
                .context
        };
        let none = ContextUse {
            path: false,
            query: false,
            principal: false,
            request: false,
        };
        assert_eq!(uses("bench-passthrough", "pass"), none);
        // `{companyId}` in the call path; filters read only `.steps`.
        assert_eq!(
            uses("redapi-v1-appdirect", "companies.get"),
            ContextUse { path: true, ..none }
        );
        // `{principal.company}` in the call path.
        assert!(uses("redapi-v1-appdirect", "companies.mine").principal);
        // Every route reading the context whole gets all of it; some shipped routes do.
        assert!(
            catalog
                .routes
                .iter()
                .any(|r| r.request.context == ContextUse::ALL)
        );
    }

    proptest! {
        /// Every construct the evaluator translates, over its input cut to what its demand
        /// says: the same answer (or the same error) from jaq and from the direct evaluator.
        #[test]
        fn a_filter_answers_the_same_over_what_its_demand_keeps(input in arb_input()) {
            // Through text, as answers arrive (floats are then what serde_json reads).
            let input = projected(&crate::mapping::project::Projection::Whole, &input);
            for f in COMPILED.iter() {
                let Some(d) = f.demand() else { continue };
                let cut = projected(&d.projection(), &input);
                prop_assert_eq!(f.run_jaq(&cut), f.run_jaq(&input), "{:?} on {} cut to {}", f, input, cut);
                prop_assert_eq!(f.run(&cut), f.run(&input), "{:?} on {}", f, input);
            }
        }
    }

    /// `ctx` with each step answer `route` cuts replaced by what it keeps of it.
    fn cut_steps(route: &Route, ctx: &Value) -> Value {
        let mut ctx = ctx.clone();
        if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
            for (name, p) in &route.plan.projections {
                if let Some(v) = steps.get_mut(name) {
                    *v = projected(p, v);
                }
            }
        }
        ctx
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every shipped route that parses its answers in part, on route contexts whose values
        /// were swapped for others of any kind: each of its filters over the context answers
        /// the same as over whole answers.
        #[test]
        fn shipped_responses_are_the_same_over_cut_answers(seed in 1u64..) {
            for ctx in mutated_contexts(seed) {
                let ctx = projected(&crate::mapping::project::Projection::Whole, &ctx);
                for route in SHIPPED.routes.iter().filter(|r| !r.plan.projections.is_empty()) {
                    // Steps the contexts do not name get each canned answer in turn.
                    for filler in ["company", "assoc"] {
                        let mut ctx = ctx.clone();
                        let fill = ctx["steps"].get(filler).cloned().unwrap_or(Value::Null);
                        if let Some(Value::Object(steps)) = ctx.get_mut("steps") {
                            for name in route.plan.projections.keys() {
                                steps.entry(name.clone()).or_insert_with(|| fill.clone());
                            }
                        }
                        let cut = cut_steps(route, &ctx);
                        for f in context_filters(route) {
                            let whole = f.run(&ctx);
                            prop_assert_eq!(f.run(&cut), whole.clone(), "{} {:?}", route.id, f);
                            // A range past the limit is refused before jaq is handed it, as on
                            // the request path (a page count from the upstream, mutated to
                            // 10^12, would have jaq count it out into memory).
                            if whole.as_ref().is_err_and(|e| e.to_string().contains("range of more than")) {
                                continue;
                            }
                            prop_assert_eq!(f.run_jaq(&cut), f.run_jaq(&ctx), "{} {:?} on {}", route.id, f, ctx);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_v1_company_read_parses_only_what_its_answer_needs() {
        let route = SHIPPED
            .routes
            .iter()
            .find(|r| &*r.id == "companies.get" && r.pack.name == "redapi-v1-appdirect")
            .unwrap();
        let company = projected(
            &route.plan.projections["company"],
            &serde_json::from_str(crate::demo::canned::COMPANY).unwrap(),
        );
        assert_eq!(
            company,
            json!({"id": "6e0f3b4a-0000-4000-8000-000000000002", "name": "Contoso Partners",
                   "enabled": true, "reseller": true})
        );
        let assoc = projected(
            &route.plan.projections["assoc"],
            &serde_json::from_str(crate::demo::canned::ASSOCIATIONS).unwrap(),
        );
        assert_eq!(
            assoc,
            json!({"content": [{"resellerCompany": {"id": "6e0f3b4a-0000-4000-8000-000000000001"}}]})
        );
        // A later call's template reads what it names whole, beside what the filter reads.
        let mine = SHIPPED
            .routes
            .iter()
            .find(|r| &*r.id == "companies.mine" && r.pack.name == "redapi-v1-appdirect")
            .unwrap();
        let mut company: Value = serde_json::from_str(crate::demo::canned::COMPANY).unwrap();
        company["id"] = json!({"nested": [1]});
        assert_eq!(
            projected(&mine.plan.projections["company"], &company),
            json!({"id": {"nested": [1]}, "name": "Contoso Partners", "enabled": true,
                   "reseller": true})
        );
        let cutting: Vec<&str> = SHIPPED
            .routes
            .iter()
            .filter(|r| !r.plan.projections.is_empty())
            .map(|r| &*r.id)
            .collect();
        eprintln!(
            "{} of {} shipped routes cut answers: {cutting:?}",
            cutting.len(),
            SHIPPED.routes.len()
        );
    }
}
