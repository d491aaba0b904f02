//! The filter language's tests: parsing, printing, evaluation, and the quoting property.

use super::parse::{Join, is_keyword, join};
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn cmp(field: &str, op: Op, value: Literal) -> Expr {
    Expr::Cmp {
        field: field.into(),
        op,
        value,
    }
}

fn s(v: &str) -> Literal {
    Literal::Str(v.into())
}

#[test]
fn every_operator_parses() {
    for op in Op::ALL {
        let text = format!("name {} 'x'", op.as_str());
        assert_eq!(parse(&text).unwrap(), cmp("name", op, s("x")), "{text}");
        // Keywords are case-insensitive.
        let upper = format!("name {} 'x'", op.as_str().to_uppercase());
        assert_eq!(parse(&upper).unwrap(), cmp("name", op, s("x")), "{upper}");
    }
}

#[test]
fn precedence_and_parentheses() {
    let e = parse("a equals 1 OR b equals 2 AND c equals 3").unwrap();
    assert_eq!(
        e,
        Expr::Or(vec![
            cmp("a", Op::Equals, Literal::Num("1".into())),
            Expr::And(vec![
                cmp("b", Op::Equals, Literal::Num("2".into())),
                cmp("c", Op::Equals, Literal::Num("3".into())),
            ]),
        ])
    );
    let e = parse("(a equals 1 OR b equals 2) AND c equals BLANK").unwrap();
    assert_eq!(
        e.to_string(),
        "(a equals 1 OR b equals 2) AND c equals BLANK"
    );
    // Nested same-kind groups flatten.
    let e = parse("a equals 'x' AND (b equals 'y' AND c equals 'z')").unwrap();
    assert!(matches!(&e, Expr::And(p) if p.len() == 3));
}

#[test]
fn doubled_quotes_and_numbers() {
    assert_eq!(
        parse("company equals 'O''Brien'").unwrap(),
        cmp("company", Op::Equals, s("O'Brien"))
    );
    assert_eq!(
        parse("n less than -2.5").unwrap(),
        cmp("n", Op::LessThan, Literal::Num("-2.5".into()))
    );
    assert_eq!(
        parse("n greater than equals 10").unwrap(),
        cmp("n", Op::GreaterThanEquals, Literal::Num("10".into()))
    );
}

#[test]
fn errors_name_the_position() {
    let cases = [
        ("name is 'x'", 6, "unknown operator"),
        ("name contains 'x", 15, "not closed"),
        ("name contains 'x' AND", 22, "ends where"),
        ("(name contains 'x'", 19, "`)`"),
        ("name contains x", 15, "expected a value"),
        ("name contains 'x' 'y'", 19, "after a complete filter"),
        ("name less than BLANK", 16, "BLANK can only"),
        ("AND equals 'x'", 1, "keyword"),
        ("name equals 12ab", 15, "number must be followed"),
        ("name equals 'x' ; drop", 17, "unexpected character"),
        ("", 1, "ends where"),
        ("name not like 'x'", 6, "unknown operator"),
    ];
    for (text, pos, msg) in cases {
        let e = parse(text).unwrap_err();
        assert_eq!(e.position, pos, "{text}: {e}");
        assert!(e.message.contains(msg), "{text}: {e}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}a equals 1{}", "(".repeat(40), ")".repeat(40));
    assert!(parse(&deep).unwrap_err().message.contains("nest deeper"));
    let ok = format!("{}a equals 1{}", "(".repeat(10), ")".repeat(10));
    assert!(parse(&ok).is_ok());
}

#[test]
fn conditions_are_bounded() {
    let conds = |n: usize| vec!["a equals 1"; n].join(" OR ");
    assert!(parse(&conds(MAX_CONDITIONS)).is_ok());
    let e = parse(&conds(MAX_CONDITIONS + 1)).unwrap_err();
    assert!(e.message.contains("limit of 64"), "{e}");
    // The 65th condition is where the filter is refused.
    assert_eq!(
        e.position,
        MAX_CONDITIONS * "a equals 1 OR ".len() + 1,
        "{e}"
    );
}

#[test]
fn length_is_bounded_before_lexing() {
    let padded = |n: usize| format!("a equals '{}'", "x".repeat(n - "a equals ''".len()));
    assert!(parse(&padded(MAX_CHARS)).is_ok());
    let e = parse(&padded(MAX_CHARS + 1)).unwrap_err();
    assert!(e.message.contains("limit of 4096"), "{e}");
    // Length is counted in characters, not bytes, and checked before anything else:
    // an oversized filter of bad characters is refused for its length.
    assert!(parse(&format!("a equals '{}'", "é".repeat(4000))).is_ok());
    let e = parse(&"%".repeat(MAX_CHARS + 1)).unwrap_err();
    assert!(e.message.contains("over the limit"), "{e}");
}

#[test]
fn evaluation() {
    let rec = json!({"id": "7", "company": "Greene Services", "active": true, "msp": "0",
                     "partner": {"@displayValue": "MSP 15", "#text": "1384998015"},
                     "phone": "", "start_date": "2010-11-12T13:14:15Z", "users": 12});
    let rec = rec.as_object().unwrap();
    let yes = [
        "company contains 'greene'",
        "company starts with 'GREENE'",
        "company ends with 'services'",
        "company equals 'greene services'",
        "company not contains 'acme'",
        "active equals 1",
        "msp equals 0",
        "partner equals '1384998015'",
        "phone equals BLANK",
        "zip equals BLANK",
        "company not equal to BLANK",
        "users greater than 9",
        "users less than equals 12",
        "start_date greater than '2010-01-01'",
        "company contains 'x' OR active equals 1",
        "(company contains 'x' OR active equals 1) AND msp not equal to 1",
        "zip not equal to 'x'",
    ];
    for f in yes {
        assert!(parse(f).unwrap().matches(rec), "{f}");
    }
    let no = [
        "company contains 'acme'",
        "active equals 0",
        "phone not equal to BLANK",
        "users less than 9",
        "zip equals 'x'",
        "zip contains ''",
        "company equals 5",
        "company contains 'greene' AND active equals 0",
    ];
    for f in no {
        assert!(!parse(f).unwrap().matches(rec), "{f}");
    }
}

#[test]
fn implied_substring_only_when_implied() {
    let f = |t: &str| parse(t).unwrap();
    assert_eq!(
        f("company contains 'ab'").implied_substring("company"),
        Some("ab")
    );
    assert_eq!(
        f("active equals 1 AND company starts with 'ab'").implied_substring("company"),
        Some("ab")
    );
    assert_eq!(
        f("company contains 'ab' OR active equals 1").implied_substring("company"),
        None
    );
    assert_eq!(
        f("company not contains 'ab'").implied_substring("company"),
        None
    );
    assert_eq!(f("company equals 5").implied_substring("company"), None);
}

#[test]
fn injection_through_quote_stays_one_value() {
    let evil = "x' OR name contains '";
    let text = format!("company contains {}", quote(evil));
    assert_eq!(text, "company contains 'x'' OR name contains '''");
    assert_eq!(parse(&text).unwrap(), cmp("company", Op::Contains, s(evil)));
}

fn arb_field() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,8}".prop_filter("keyword", |f| !is_keyword(f))
}

fn arb_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<String>().prop_map(Literal::Str),
        (-1_000_000i64..1_000_000).prop_map(|n| Literal::Num(n.to_string())),
        Just(Literal::Blank),
    ]
}

fn arb_cmp() -> impl Strategy<Value = Expr> {
    (arb_field(), 0..Op::ALL.len(), arb_literal()).prop_map(|(field, i, value)| {
        let op = if value == Literal::Blank {
            [Op::Equals, Op::NotEqualTo][i % 2]
        } else {
            Op::ALL[i]
        };
        Expr::Cmp { field, op, value }
    })
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_cmp().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| join(v, Join::And)),
            prop::collection::vec(inner, 2..4).prop_map(|v| join(v, Join::Or)),
        ]
    })
}

proptest! {
    #[test]
    fn quote_parses_back_to_the_value(v in any::<String>()) {
        let text = format!("company equals {}", quote(&v));
        prop_assert_eq!(parse(&text).unwrap(), cmp("company", Op::Equals, Literal::Str(v)));
    }

    #[test]
    fn quoted_values_never_add_conditions(v in "[ a-zA-Z'()]{0,30}") {
        let text = format!("a contains {} AND b equals 'y'", quote(&v));
        let e = parse(&text).unwrap();
        prop_assert_eq!(e.fields(), vec!["a", "b"]);
    }

    #[test]
    fn print_then_parse_is_identity(e in arb_expr()) {
        let text = e.to_string();
        prop_assert_eq!(parse(&text).unwrap(), e, "{}", text);
    }

    #[test]
    fn parser_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }
}
