//! The admin API's views of proxied traffic: the audit trail (`/v1/audit`, each action with
//! the upstream company ids it acted on, filtered by one with `company`), captured bodies
//! (`/v1/tracecode/{tracecode}`) and the per-user statistics, as JSON or an XLSX report.
//! They only read what the gateway recorded, so they sit apart from the handlers that change
//! companies, users, keys and quotas.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use super::access::company_scope;
use super::service::{Answer, Call};
use super::validate;
use super::wire::{json_response, now_ms, rfc3339_ms, store_err};
use crate::body::full;
use crate::capture::Flow;
use crate::dialect::xml::{XmlRules, xml_to_value};
use crate::error::{BadRequest, GatewayError, Internal};
use crate::store::{AuditQuery, AuditRow, StatRow, StatsQuery};

/// `GET /v1/audit`: one action per proxied request, filtered as seed 003 does.
pub(super) async fn audit(c: Call) -> Answer {
    let pairs = &c.query;
    let list = validate::list(
        pairs,
        &[
            "time",
            "username",
            "company_key",
            "service_name",
            "operation_id",
            "method_group",
            "points",
            "duration",
        ],
    )?;
    let now = now_ms();
    let from_ms = validate::time_param(pairs, "from")?.unwrap_or(now - now.rem_euclid(86_400_000));
    let to_ms = validate::time_param(pairs, "to")?.unwrap_or(now + 1);
    validate::period(pairs, from_ms, to_ms)?;
    let text = |name: &str, min: usize, max: usize| validate::text_param(pairs, name, min, max);
    let q = AuditQuery {
        offset: list.offset,
        limit: list.limit,
        from_ms,
        to_ms,
        company_key: validate::word_param(pairs, "company_key", 3, 256)?,
        username: validate::word_param(pairs, "username", 2, 256)?,
        service: text("service_name", 1, 64)?,
        operation: text("operation_id", 3, 256)?,
        method_group: text("method_group", 1, 64)?,
        // An upstream company id the requests acted on; not a `\w+` key like company_key
        // (the caller's company): upstream ids may hold `-` (UUIDs) and other characters.
        target: text("company", 1, 256)?,
        sort_field: list.sort_field,
        descending: list.descending,
    };
    let page = c.admin.audit_log.list_audit(q).await.map_err(store_err)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"actions": page.items.iter().map(audit_json).collect::<Vec<_>>(),
                "statistics": {"overall": {"total": page.overall}, "filter": {"total": page.filtered}}}),
    ))
}

/// `P…DT…H…M…S` for a duration in milliseconds (ISO 8601).
pub(super) fn iso_duration(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    out.push_str(&format!("{s}.{:03}S", ms % 1000));
    out
}

fn audit_json(r: &AuditRow) -> Value {
    json!({
        "username": &*r.username,
        "company_key": &*r.company_key,
        "tracedata": {"code": &*r.tracecode, "client": r.client(), "server": &*r.server,
                      "service": &*r.service, "operation": &*r.operation, "time": rfc3339_ms(r.time_ms)},
        "method_group": &*r.method_group,
        "statistics": {"points_count": r.points, "duration": iso_duration(r.duration_ms)},
        "status": r.status,
        "targets": r.targets.iter().map(|t| &**t).collect::<Vec<&str>>(),
        "ip": r.ip.map(|ip| ip.to_string()),
    })
}

/// `GET /v1/statistics`: daily points per user, service and method group.
pub(super) async fn statistics(c: Call) -> Answer {
    let rows = stats_rows(c).await?;
    Ok(json_response(StatusCode::OK, &stats_json(&rows)))
}

/// `GET /v1/report`: the statistics as an XLSX file.
pub(super) async fn report(c: Call) -> Answer {
    let rows = stats_rows(c).await?;
    let bytes = report_xlsx(&rows).map_err(|e| Internal::Failed {
        doing: "writing the statistics workbook",
        source: e.into(),
    })?;
    let mut r = Response::new(full(Bytes::from(bytes)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"rosetta-report.xlsx\""),
    );
    Ok(r)
}

/// `/v1/tracecode/{tracecode}`: one captured body, as kept or (`data_flow_convert=JSON`)
/// an XML body converted to JSON.
pub(super) async fn captured(c: Call) -> Answer {
    let (tracecode, pairs) = (c.param("tracecode")?, &c.query);
    let valid = (1..=64).contains(&tracecode.len())
        && tracecode
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !valid {
        return Err(BadRequest::param(
            "tracecode",
            "tracecode must be 1 to 64 letters, digits or `-`",
        )
        .into());
    }
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let flow = match get("data_flow_type") {
        None => Flow::Input,
        Some(v) if v.eq_ignore_ascii_case("INPUT") => Flow::Input,
        Some(v) if v.eq_ignore_ascii_case("OUTPUT") => Flow::Output,
        Some(_) => {
            return Err(BadRequest::param(
                "data_flow_type",
                "data_flow_type must be INPUT or OUTPUT",
            )
            .into());
        }
    };
    let stage = match get("data_flow_stage") {
        None => 0,
        Some(v) => match v.parse::<u8>() {
            Ok(s) if s <= 3 => s,
            Ok(_) | Err(_) => {
                return Err(BadRequest::param(
                    "data_flow_stage",
                    "data_flow_stage must be an integer from 0 to 3",
                )
                .into());
            }
        },
    };
    // Stages 2 and 3 name the upstream exchanges whatever the flow: 2 the requests Rosetta
    // sent, 3 the answers it got, each an array in call order. They are what INPUT 1 and
    // OUTPUT 0 hold (the translation's two inner ends), so nothing is stored twice.
    let (flow, stage) = match stage {
        2 => (Flow::Input, 1),
        3 => (Flow::Output, 0),
        s => (flow, s),
    };
    let to_json = match get("data_flow_convert") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("ORIGIN") => false,
        Some(v) if v.eq_ignore_ascii_case("JSON") => true,
        Some(_) => {
            return Err(BadRequest::param("data_flow_convert", "data_flow_convert must be ORIGIN or JSON (XLSX is not offered for captured bodies)").into());
        }
    };
    let body = c
        .admin
        .captures
        .get_capture(tracecode.to_owned(), flow, stage)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "capture {} stage {stage} of tracecode `{tracecode}`",
                flow.as_str()
            ))
        })?;
    let xml = body.content_type.contains("xml");
    let (content_type, bytes) = if to_json && xml {
        // LongJump records repeat; every other repeated element is refused, never guessed.
        let rules = XmlRules::default().array("tenant").array("record");
        let v = xml_to_value(&body.body, &rules).map_err(|e| {
            BadRequest::param(
                "data_flow_convert",
                format!("the captured XML does not convert: {e}"),
            )
        })?;
        (
            "application/json".to_owned(),
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        )
    } else {
        (body.content_type.clone(), body.body.clone())
    };
    let mut r = Response::new(full(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if body.truncated {
        r.headers_mut()
            .insert("x-capture-truncated", HeaderValue::from_static("true"));
    }
    Ok(r)
}

/// Seed 003's statistics period: `from`/`to` dates (default: this month up to yesterday,
/// today excluded), at most 366 days; scoped to the caller's company for a PARTNER.
async fn stats_rows(c: Call) -> Result<Vec<StatRow>, GatewayError> {
    let company_key = company_scope(c.caller()?);
    let pairs = &c.query;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = |name: &str| -> Result<Option<time::Date>, BadRequest> {
        match pairs.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => time::Date::parse(v, fmt)
                .map(Some)
                .map_err(|_| BadRequest::param(name, format!("{name} must be a YYYY-MM-DD date"))),
        }
    };
    let today = crate::clock::WallClock::System.today_utc();
    let from = date("from")?.unwrap_or_else(|| today.replace_day(1).unwrap_or(today));
    let to = date("to")?.unwrap_or_else(|| today.previous_day().unwrap_or(today));
    if from > to && pairs.iter().any(|(k, _)| k == "from" || k == "to") {
        return Err(BadRequest::param("from", "from must not be after to").into());
    }
    if (to - from).whole_days() > validate::MAX_PERIOD_DAYS {
        return Err(BadRequest::param(
            "to",
            format!("a period spans at most {} days", validate::MAX_PERIOD_DAYS),
        )
        .into());
    }
    let username = validate::word_param(pairs, "username", 2, 256)?;
    let show = |d: time::Date| d.format(fmt).unwrap_or_default();
    c.admin
        .statistics
        .statistics(StatsQuery {
            from_day: show(from),
            to_day: show(to),
            username,
            company_key,
        })
        .await
        .map_err(store_err)
}

/// Seed 003's `users → dates → services → methods` nesting of ordered rows.
fn stats_json(rows: &[StatRow]) -> Value {
    let mut users: Vec<Value> = Vec::new();
    for r in rows {
        if users
            .last()
            .is_none_or(|u| u["username"] != r.username.as_str())
        {
            users.push(json!({"username": r.username, "dates": []}));
        }
        let Some(dates) = users.last_mut().and_then(|u| u["dates"].as_array_mut()) else {
            continue;
        };
        if dates.last().is_none_or(|d| d["date"] != r.day.as_str()) {
            dates.push(json!({"date": r.day, "services": []}));
        }
        let Some(services) = dates.last_mut().and_then(|d| d["services"].as_array_mut()) else {
            continue;
        };
        if services
            .last()
            .is_none_or(|s| s["service"] != r.service.as_str())
        {
            services.push(json!({"service": r.service, "methods": []}));
        }
        if let Some(methods) = services
            .last_mut()
            .and_then(|s| s["methods"].as_array_mut())
        {
            methods.push(json!({"method_group": r.method_group,
                                "unique_points_per_day": r.unique_points,
                                "points_per_day": r.points}));
        }
    }
    json!({"users": users})
}

/// The statistics as an XLSX workbook: one row per user, day, service and method group.
fn report_xlsx(rows: &[StatRow]) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet();
    ws.set_name("statistics").map_err(|e| e.to_string())?;
    let head = [
        "username",
        "date",
        "service",
        "method_group",
        "points_per_day",
        "unique_points_per_day",
    ];
    for (c, h) in head.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)
            .map_err(|e| e.to_string())?;
    }
    for (i, r) in rows.iter().enumerate() {
        let row = (i + 1) as u32;
        let cells = [&r.username, &r.day, &r.service, &r.method_group];
        for (c, v) in cells.iter().enumerate() {
            ws.write_string(row, c as u16, v.as_str())
                .map_err(|e| e.to_string())?;
        }
        ws.write_number(row, 4, r.points as f64)
            .map_err(|e| e.to_string())?;
        ws.write_number(row, 5, r.unique_points as f64)
            .map_err(|e| e.to_string())?;
    }
    ws.autofit();
    wb.save_to_buffer().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration(3), "PT0.003S");
        assert_eq!(iso_duration(61_250), "PT1M1.250S");
        assert_eq!(iso_duration(7_322_000), "PT2H2M2.000S");
    }
}
